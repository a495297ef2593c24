"""The trigger: a Lambda function (``gpufleet.deploy.trigger.handler``) that the manifest
bucket's notifications and, while a job is open, a one-minute schedule invoke.

A notification makes the manifest a job and runs one controller step (the group goes
from zero to what the backlog needs); the schedule runs a step every minute while
anything is open, and the step that finds every job finished and the fleet at zero
disables its own schedule. Nothing runs, and nothing polls, while there is no work.

The function runs the CPU image (the same image as the API) in the private subnets, with
one concurrent execution: the controller is meant to run once per model at a time, and
S3's invocations are asynchronous, so Lambda holds back (and retries) any beyond it.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, Template, awslambda, events

from gpufleet.deploy.stack.datastores import secret_arn
from gpufleet.deploy.stack.environment import common
from gpufleet.deploy.stack.names import (
    TICK_RULE,
    TRIGGER_FUNCTION,
    TRIGGER_LOGS,
    TRIGGER_ROLE,
    TRIGGER_SG,
    Names,
)
from gpufleet.deploy.stack.network import private_subnets
from gpufleet.deploy.stack.parts import make
from gpufleet.deploy.stack.storage import S3_PERMISSION

TIMEOUT_S = 900  # a manifest of a million items is read and enqueued within one call


def add_trigger(t: Template, names: Names) -> None:
    env = {**common(names), "GPUFLEET_HOME": "/tmp/gpufleet",
           "TRIGGER_RULE": names.rule, "TRIGGER_MAX_WORKERS": Ref("MaxWorkers"),
           "TRIGGER_COOLDOWN_S": Ref("CooldownS"), "TRIGGER_PREFIX": Ref("ManifestPrefix"),
           "TRIGGER_DB_SECRET": secret_arn()}
    function = make(awslambda.Function, TRIGGER_FUNCTION, {
        "FunctionName": names.function, "PackageType": "Image",
        "Code": {"ImageUri": Ref("ServiceImageUri")},
        "ImageConfig": {"EntryPoint": ["python", "-m", "awslambdaric"],
                        "Command": ["gpufleet.deploy.trigger.handler"]},
        "Role": GetAtt(TRIGGER_ROLE, "Arn"), "Timeout": TIMEOUT_S, "MemorySize": 1024,
        "ReservedConcurrentExecutions": 1,
        "Environment": {"Variables": env},
        "VpcConfig": {"SubnetIds": private_subnets(), "SecurityGroupIds": [Ref(TRIGGER_SG)]},
        "LoggingConfig": {"LogGroup": Ref(TRIGGER_LOGS)},
        "TracingConfig": {"Mode": "PassThrough"},
    })
    t.add_resource(function)
    t.add_resource(make(awslambda.EventInvokeConfig, "TriggerRetries", {
        "FunctionName": Ref(TRIGGER_FUNCTION), "Qualifier": "$LATEST",
        "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 21600}))
    t.add_resource(make(awslambda.Permission, S3_PERMISSION, {
        "FunctionName": GetAtt(TRIGGER_FUNCTION, "Arn"), "Action": "lambda:InvokeFunction",
        "Principal": "s3.amazonaws.com", "SourceAccount": Ref("AWS::AccountId"),
        "SourceArn": names.bucket_arn("manifests")}))
    # Disabled until the first job: the function enables it, and disables it when idle.
    t.add_resource(make(events.Rule, TICK_RULE, {
        "Name": names.rule, "ScheduleExpression": "rate(1 minute)", "State": "DISABLED",
        "Description": "gpufleet controller step while a job is open",
        "Targets": [{"Id": "trigger", "Arn": GetAtt(TRIGGER_FUNCTION, "Arn")}]}))
    t.add_resource(make(awslambda.Permission, "TickMayInvokeTrigger", {
        "FunctionName": GetAtt(TRIGGER_FUNCTION, "Arn"), "Action": "lambda:InvokeFunction",
        "Principal": "events.amazonaws.com", "SourceArn": GetAtt(TICK_RULE, "Arn")}))

