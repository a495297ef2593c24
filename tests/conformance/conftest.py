"""Fixtures of the conformance suites (servers they need beyond tests/servers.py)."""

import secrets
from collections.abc import Iterator

import boto3
import pytest

from gpufleet.autoscale.providers.aws import create_group
from tests.conformance.backends import in_process_moto  # noqa: F401
from tests.servers import MotoServer


@pytest.fixture
def bucket_with_inbox(aws_env: MotoServer) -> Iterator[tuple[str, str]]:
    """A bucket whose manifests/ prefix notifies an SQS queue; yields (bucket, queue URL)."""
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    bucket, queue = "photos-" + secrets.token_hex(4), "inbox-" + secrets.token_hex(4)
    s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{
            "Id": "gpufleet-inbox", "QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "manifests/"}]}}}]})
    yield bucket, url


@pytest.fixture
def aws(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """moto for Auto Scaling and EC2 too."""
    for service in ("AUTO_SCALING", "EC2"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", aws_env.endpoint)
    return aws_env


@pytest.fixture
def group(aws: MotoServer) -> str:
    """An Auto Scaling group made as gpufleet makes one (spot first, a drain hook)."""
    ec2 = boto3.client("ec2")
    template = "gpufleet-" + secrets.token_hex(4)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(LaunchTemplateName=template, LaunchTemplateData={
        "ImageId": image, "InstanceType": "g4dn.xlarge"})
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    name = "gpufleet-" + secrets.token_hex(4)
    create_group(name, launch_template=template, instance_types=["g4dn.xlarge", "g5.xlarge"],
                 subnets=[subnet], max_size=4)
    return name
