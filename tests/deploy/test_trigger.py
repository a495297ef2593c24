"""The Lambda trigger, called in-process with the S3 event documents moto (in server mode, over
HTTP) sends for objects put in a bucket, against moto's SQS, Auto Scaling, EC2, EventBridge and
Secrets Manager: a manifest becomes one job with every item and its tasks on the SQS queue,
the controller step sizes the group and enables the schedule; a duplicate event or an object
that is not a manifest makes no job; once the work is done the next scheduled step takes the
group back to zero and disables its own schedule.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from gpufleet.autoscale.providers.aws import AwsProvider
from gpufleet.config import Settings
from gpufleet.deploy.trigger import TriggerConfig, handler
from gpufleet.errors import ConfigError
from gpufleet.index import Index
from gpufleet.models.base import canonical_spec
from gpufleet.queue import open_queue
from gpufleet.queue.sqs import ensure_queue_pair
from tests.servers import MotoServer

MODEL = canonical_spec("synthetic?item_ms=10&bootstrap_s=300")
SCHEDULED = {"version": "0", "source": "aws.events", "detail-type": "Scheduled Event",
             "detail": {}}


class Deployment:
    """What the stack makes, made in moto: buckets, queues, the group, the rule, a secret."""

    def __init__(self, tmp_path: Path, group: str, monkeypatch: pytest.MonkeyPatch) -> None:
        tag = secrets.token_hex(4)
        self.s3, self.sqs = boto3.client("s3"), boto3.client("sqs")
        self.events = boto3.client("events")
        self.manifests, self.group, self.rule = f"manifests-{tag}", group, f"tick-{tag}"
        self.s3.create_bucket(Bucket=self.manifests)
        self.s3.put_bucket_versioning(Bucket=self.manifests,
                                      VersioningConfiguration={"Status": "Enabled"})
        self.s3.create_bucket(Bucket=f"input-{tag}")
        # Where moto delivers the bucket's notifications: the documents the handler is given.
        # Prefix only (the stack also filters by suffix), so a photo under it notifies too.
        self.spy = self.sqs.create_queue(QueueName=f"spy-{tag}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.spy, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        self.s3.put_bucket_notification_configuration(
            Bucket=self.manifests, NotificationConfiguration={"QueueConfigurations": [{
                "QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix",
                                                    "Value": "manifests/"}]}}}]})
        self.events.put_rule(Name=self.rule, ScheduleExpression="rate(1 minute)",
                             State="DISABLED")
        secret = boto3.client("secretsmanager").create_secret(
            Name=f"db-{tag}", SecretString=json.dumps({"username": "gpufleet",
                                                       "password": "from-the-secret"}))
        for name in [k for k in os.environ if k.startswith("GPUFLEET_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("PGPASSWORD", "")
        monkeypatch.delenv("PGPASSWORD")  # the handler sets it; undone after the test
        env = {"GPUFLEET_HOME": str(tmp_path / "home"), "GPUFLEET_QUEUE": f"sqs://tasks-{tag}",
               "GPUFLEET_MODEL": MODEL, "GPUFLEET_AWS_ASG": group,
               "GPUFLEET_INPUT": f"s3://input-{tag}/", "GPUFLEET_OUTPUT": f"s3://input-{tag}/out/",
               "TRIGGER_RULE": self.rule, "TRIGGER_MAX_WORKERS": "4",
               "TRIGGER_COOLDOWN_S": "60", "TRIGGER_PREFIX": "manifests/",
               "TRIGGER_DB_SECRET": secret["ARN"]}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        gpufleet_log = logging.getLogger("gpufleet")
        monkeypatch.setattr(gpufleet_log, "level", gpufleet_log.level)  # the handler sets it
        self.settings = Settings.from_env()
        ensure_queue_pair(self.settings.queue, max_receives=5)
        self.index = Index(self.settings.db)

    def put(self, key: str, body: bytes) -> dict[str, Any]:
        """Put an object; return the event document moto's notification carried for it."""
        self.s3.put_object(Bucket=self.manifests, Key=key, Body=body)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for message in self.sqs.receive_message(QueueUrl=self.spy, WaitTimeSeconds=1,
                                                    MaxNumberOfMessages=10).get("Messages", []):
                self.sqs.delete_message(QueueUrl=self.spy,
                                        ReceiptHandle=message["ReceiptHandle"])
                document = json.loads(message["Body"])
                # S3 sends keys URL-encoded, as "manifests/day+1.json"
                if any(unquote_plus(r["s3"]["object"]["key"]) == key
                       for r in document.get("Records", [])):
                    return dict(document)
        raise AssertionError(f"moto sent no event for {key}")

    def schedule(self) -> str:
        return str(self.events.describe_rule(Name=self.rule)["State"])

    def desired(self) -> int:
        return int(boto3.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.group])["AutoScalingGroups"][0]["DesiredCapacity"])


@pytest.fixture
def deployment(tmp_path: Path, group: str, aws: MotoServer,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    made = Deployment(tmp_path, group, monkeypatch)
    yield made
    made.index.close()


def test_a_manifest_event_makes_one_job_sizes_the_fleet_and_back_to_zero(
        deployment: Deployment) -> None:
    d = deployment
    keys = [f"photos/p{i:03d}.jpg" for i in range(50)]
    # Given the event S3 sent for a manifest put under the prefix
    event = d.put("manifests/day 1.json", json.dumps({"items": keys}).encode())
    # (moto's record names the object by key and eTag; real S3 adds the versionId of a
    # versioned bucket, which the inbox then prefers: see intake.s3.parse_events)
    assert event["Records"][0]["eventName"].startswith("ObjectCreated")
    # When the trigger is invoked with it
    result = handler(event)
    # Then the manifest became one job with every item, read from the input bucket
    [made] = result["manifests"]
    assert made["outcome"] == "job" and made["key"] == "day 1.json"
    job = d.index.job(made["job"])
    assert job.counts.total == 50 and job.input == d.settings.input
    # And its tasks are on the model's SQS queue (32 items to a task)
    queue = open_queue(d.settings.queue, name=MODEL)
    assert queue.depth().queued == 2
    # And the controller step set the group's desired capacity, and the schedule is on
    assert result["desired"] >= 1 and d.desired() == result["desired"]
    assert d.schedule() == "ENABLED"
    # And the database password came from the secret
    assert os.environ["PGPASSWORD"] == "from-the-secret"

    # When S3 delivers the same event again
    again = handler(event)
    # Then no second job, and nothing more on the queue
    assert [m["outcome"] for m in again["manifests"]] == ["duplicate"]
    assert again["manifests"][0]["job"] == made["job"]
    assert len(d.index.jobs()) == 1 and queue.depth().queued == 2

    # When every task is done and the workers have been idle past the cool-down
    while leases := queue.receive(10, visibility_timeout_s=60):
        for lease in leases:
            queue.ack(lease)
    d.index.fail_pending(made["job"], None, error="test: done elsewhere")
    for machine in AwsProvider(d.settings, model=MODEL).machines():
        d.index.worker_seen(f"w-{machine.id}", host="ec2", pid=1, model=MODEL, state="ready",
                            bootstrap_s=300.0, extra={"instance": machine.id,
                                                      "state_since": time.time() - 120})
    # And the schedule calls the trigger
    result = handler(SCHEDULED)
    # Then the group is back to zero and the schedule disabled itself
    assert result["manifests"] == [] and result["desired"] == 0
    assert d.desired() == 0 and result["machines"] == 0
    assert d.schedule() == "DISABLED"
    queue.close()


def test_an_object_that_is_not_a_manifest_is_refused_once_and_makes_no_job(
        deployment: Deployment, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    d = deployment
    event = d.put("manifests/cat.jpg", b"\xff\xd8 not a manifest")
    with caplog.at_level(logging.ERROR):
        result = handler(event)
    [refused] = result["manifests"]
    assert refused["outcome"] == "refused" and "unknown manifest type" in refused["reason"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"inbox s3://{d.manifests}/manifests/: manifest cat.jpg refused, no job made: "
        f"{refused['reason']}"]
    # Delivered again: recognised, still no job; and with no job the schedule stays off
    assert handler(event)["manifests"][0]["outcome"] == "duplicate"
    assert d.index.jobs() == [] and d.schedule() == "DISABLED"
    # And an object outside the manifest prefix (a notification set wider than the stack's)
    monkeypatch.setenv("TRIGGER_PREFIX", "elsewhere/")
    assert handler(event)["manifests"] == [
        {"key": "manifests/cat.jpg", "outcome": "ignored", "reason": "outside prefix"}]
    assert d.index.jobs() == []


def test_the_trigger_refuses_a_bad_configuration_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^TRIGGER_RULE is not set"):
        TriggerConfig.from_env({})
    with pytest.raises(ConfigError, match="TRIGGER_MAX_WORKERS must be at least 1"):
        TriggerConfig.from_env({"TRIGGER_RULE": "r", "TRIGGER_MAX_WORKERS": "0"})
