"""Least-privilege roles: the worker, the trigger (which runs the controller) and the API.

Each role gets exactly the actions the README lists for it ("On AWS", "Deploy on AWS"),
on the stack's own resources: its buckets (by name), the queue family ``<prefix>-tasks*``
(each model's queues are made at run time), the worker group, the tick rule, the key
and the database secret. ``*`` is used only where AWS has no resource-level permission
(Describe calls, ECR's token, the network interfaces a function in a VPC makes).
"""

from __future__ import annotations

from typing import Any

from troposphere import GetAtt, If, NoValue, Ref, Sub, Template, iam

from gpufleet.deploy.stack.names import (
    API_EXECUTION_ROLE,
    API_LOGS,
    API_ROLE,
    DB_SECRET,
    TRIGGER_LOGS,
    TRIGGER_ROLE,
    WORKER_LOGS,
    WORKER_ROLE,
    Names,
)
from gpufleet.deploy.stack.parts import make
from gpufleet.deploy.stack.storage import key_arn

SQS_WORK = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
            "sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
SQS_SUBMIT = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:CreateQueue"]
KMS_USE = ["kms:GenerateDataKey", "kms:Decrypt"]
ECR_PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
LOGS_WRITE = ["logs:CreateLogStream", "logs:PutLogEvents"]
SCALE = ["autoscaling:UpdateAutoScalingGroup", "autoscaling:TerminateInstanceInAutoScalingGroup",
         "autoscaling:SetInstanceProtection"]
DESCRIBE = ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeScalingActivities",
            "ec2:DescribeInstances"]
VPC_FUNCTION = ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses"]


def _allow(actions: list[str], resources: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions,
            "Resource": resources if isinstance(resources, list) else [resources]}


def _secret() -> Any:
    read = ["secretsmanager:GetSecretValue"]
    return If("MakeDatabase", _allow(read, Ref(DB_SECRET)), If(
        "GivenDatabaseSecret", _allow(read, Ref("DatabaseSecretArn")), NoValue))


def _ecr() -> list[Any]:
    # The image's repository is known only as a URI; pulls are limited to this account's.
    return [_allow(["ecr:GetAuthorizationToken"], "*"),
            _allow(ECR_PULL, Sub("arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:"
                                 "repository/*"))]


def statements(names: Names) -> dict[str, tuple[str, list[Any]]]:
    """role logical id -> (the service that assumes it, its statements)."""
    b = names.bucket_arn
    family = names.queue_family_arn()
    return {
        WORKER_ROLE: ("ec2.amazonaws.com", [
            _allow(["s3:GetObject"], b("input", objects=True)),
            _allow(["s3:ListBucket"], b("input")),
            _allow(["s3:PutObject"], b("results", objects=True)),
            _allow(KMS_USE, key_arn()),
            _allow([*SQS_WORK, "sqs:CreateQueue"], family),
            _allow(["autoscaling:CompleteLifecycleAction"], names.group_arn()),
            _secret(), *_ecr(),
            _allow(LOGS_WRITE, GetAtt(WORKER_LOGS, "Arn"))]),
        TRIGGER_ROLE: ("lambda.amazonaws.com", [
            _allow(["s3:GetObject", "s3:GetObjectVersion"], b("manifests", objects=True)),
            _allow(KMS_USE, key_arn()),
            _allow(SQS_SUBMIT, family),
            _allow(SCALE, names.group_arn()),
            _allow(DESCRIBE, "*"),
            _allow(["events:EnableRule", "events:DisableRule"], names.rule_arn()),
            _secret(),
            _allow(VPC_FUNCTION, "*"),
            _allow(LOGS_WRITE, GetAtt(TRIGGER_LOGS, "Arn"))]),
        API_ROLE: ("ecs-tasks.amazonaws.com", [
            _allow(["s3:GetObject"], [b("input", objects=True), b("results", objects=True)]),
            _allow(["s3:PutObject"], b("input", objects=True)),
            _allow(["s3:ListBucket"], [b("input"), b("results")]),
            _allow(KMS_USE, key_arn()),
            _allow([*SQS_SUBMIT, "sqs:ReceiveMessage", "sqs:DeleteMessage",
                     "sqs:ChangeMessageVisibility"], family)]),
        API_EXECUTION_ROLE: ("ecs-tasks.amazonaws.com", [
            *_ecr(), _allow(LOGS_WRITE, GetAtt(API_LOGS, "Arn")), _secret(),
            _allow(["kms:Decrypt"], key_arn())]),
    }


def add_roles(t: Template, names: Names) -> None:
    for logical, (service, policy) in statements(names).items():
        t.add_resource(make(iam.Role, logical, {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": service},
                "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "gpufleet", "PolicyDocument": {
                "Version": "2012-10-17", "Statement": policy}}]}))
