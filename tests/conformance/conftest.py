"""Fixtures of the conformance suites (servers they need beyond tests/servers.py)."""

import secrets
from collections.abc import Iterator

import boto3
import pytest

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
