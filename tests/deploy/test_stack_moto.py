"""The template created and deleted through moto's CloudFormation (server mode, over HTTP).

moto builds what it models for real (its S3, SQS, Auto Scaling, EC2, Lambda, IAM, KMS, ECS,
ELB, EventBridge, CloudWatch, Logs and SNS answer for them afterwards) and skips the types it
does not model; the README names those, validated by cfn-lint only. The stack is created on
moto's default VPC with an existing database and cache, because moto's CloudFormation has no
Fn::Cidr (the made VPC's subnets) and no RDS endpoint attributes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from gpufleet.config import Settings
from gpufleet.deploy.stack.names import Names
from gpufleet.deploy.stack.template import build, to_yaml
from gpufleet.deploy.trigger import TriggerConfig
from gpufleet.models.base import canonical_spec
from gpufleet.queue.sqs_setup import queue_name
from tests.servers import MotoServer

README = Path(__file__).resolve().parents[2] / "README.md"
MODEL = "synthetic?item_ms=5"


def _not_modeled_in_readme() -> set[str]:
    text = README.read_text()
    start = text.index("Validated by cfn-lint only")
    return set(re.findall(r"AWS::\w+::\w+", text[start:text.index("\n\n", start)]))


@pytest.fixture
def stack(aws_env: MotoServer) -> tuple[Any, dict[str, Any]]:
    ec2 = boto3.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    boto3.client("ssm").put_parameter(Name="/test/gpu-ami", Value=image, Type="String",
                                      Overwrite=True)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    subnets = ",".join(s["SubnetId"] for s in ec2.describe_subnets(Filters=[
        {"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"][:2])
    text = to_yaml(build(Names("acme", MODEL), defaults={"GpuAmiId": "/test/gpu-ami"}))
    given = {"WorkerImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/gpufleet:cuda",
             "ServiceImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/gpufleet:cpu",
             "VpcId": vpc["VpcId"], "PrivateSubnetIds": subnets, "PublicSubnetIds": subnets,
             "DatabaseUrl": "postgresql://gpufleet@db.example.com/gpufleet",
             "CacheUrl": "rediss://cache.example.com:6379/0"}
    cf = boto3.client("cloudformation")
    stack_id = cf.create_stack(
        StackName="gpufleet", TemplateBody=text, Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()]
    )["StackId"]
    return cf, {"id": stack_id, "template": json.loads(json.dumps(build(Names(
        "acme", MODEL)).to_dict()))}


def test_the_stack_is_created_answers_and_is_deleted_keeping_the_results(
        stack: tuple[Any, dict[str, Any]]) -> None:
    cf, made = stack
    [described] = cf.describe_stacks(StackName=made["id"])["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    # The buckets, by the names the stack gives them
    buckets = {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]}
    assert {f"acme-{role}-123456789012-us-east-1" for role in ("input", "results", "manifests")
            } <= buckets
    # The model's queue dead-letters after MaxReceives (5) deliveries
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name("acme-tasks", MODEL))["QueueUrl"]
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert str(policy["maxReceiveCount"]) == "5" and policy["deadLetterTargetArn"].endswith(
        queue_name("acme-tasks", MODEL) + "-dlq")
    # The group starts empty in both subnets, protected from scale-in but by the controller
    autoscaling = boto3.client("autoscaling")
    [group] = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=["acme-workers"])["AutoScalingGroups"]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 10, 0)
    assert group["NewInstancesProtectedFromScaleIn"] is True
    assert len(group["VPCZoneIdentifier"].split(",")) == 2
    # The trigger's environment, as CloudFormation resolved it, is settings gpufleet reads
    # (an unknown GPUFLEET_* name would be refused) naming the stack's own queue and group
    function = boto3.client("lambda").get_function(FunctionName="acme-trigger")
    env = {k: str(v) for k, v in function["Configuration"]["Environment"]["Variables"].items()}
    settings = Settings.from_env(env)
    assert (settings.queue, settings.fleet.aws_asg, settings.model) == (
        "sqs://acme-tasks", "acme-workers", canonical_spec(MODEL))
    assert TriggerConfig.from_env(env).rule == "acme-controller-tick"
    # Its schedule waits, disabled, for the first job
    assert boto3.client("events").describe_rule(Name="acme-controller-tick")[
        "State"] == "DISABLED"
    # Every type moto does not model is one the README says was validated by cfn-lint only
    created = {r["ResourceType"] for r in cf.list_stack_resources(StackName=made["id"])[
        "StackResourceSummaries"] if r.get("PhysicalResourceId")}
    conditional = {"Condition"}  # resources made only without the given VPC, key or stores
    used = {r["Type"] for r in made["template"]["Resources"].values()
            if not conditional & set(r)}
    # moto keeps no id for a permission, but the function's policy has both
    policy = boto3.client("lambda").get_policy(FunctionName="acme-trigger")["Policy"]
    assert "s3.amazonaws.com" in policy and "events.amazonaws.com" in policy
    created.add("AWS::Lambda::Permission")
    assert used - created <= _not_modeled_in_readme()

    # When the stack is deleted: everything goes but the results bucket
    cf.delete_stack(StackName=made["id"])
    [described] = cf.describe_stacks(StackName=made["id"])["Stacks"]
    assert described["StackStatus"] == "DELETE_COMPLETE"
    buckets = {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]}
    assert "acme-results-123456789012-us-east-1" in buckets  # DeletionPolicy: Retain
    assert "acme-input-123456789012-us-east-1" not in buckets
    assert boto3.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=["acme-workers"])["AutoScalingGroups"] == []
