"""The fleet on AWS, against moto in server mode over HTTP: the S3 → SQS inbox, the ASG provider.

moto serves S3 event notifications to SQS, Auto Scaling groups with a
mixed-instances policy, lifecycle hooks, scale-in protection and
TerminateInstanceInAutoScalingGroup. It does not model spot capacity (every
instance is on-demand to DescribeInstances), the Terminating:Wait state or
CompleteLifecycleAction, so the worker's side of the hook is tested against
the IMDS document it reads (tests/unit/test_fleet_parts.py) and not here.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from gpufleet.autoscale.controller import Controller, Estimates
from gpufleet.autoscale.policy import PolicyConfig
from gpufleet.autoscale.providers.aws import HOOK, AwsProvider, spot_refused_in
from gpufleet.config import Settings
from gpufleet.domain import Capacity
from gpufleet.errors import ConfigError
from gpufleet.index import Index
from gpufleet.index.fleet_records import FleetRecords
from gpufleet.intake.ingest import Ingest
from gpufleet.intake.s3 import S3Inbox
from gpufleet.jobs import enqueue_job
from gpufleet.models.base import canonical_spec
from gpufleet.queue import open_queue
from tests.conformance.backends import jobs_from
from tests.conftest import Home
from tests.servers import MotoServer

MODEL = canonical_spec("synthetic?item_ms=10&bootstrap_s=300")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"GPUFLEET_HOME": str(tmp_path / "home")})


# -- the S3 inbox: bucket notifications to SQS ----------------------------------------------


def _queue_is_empty(url: str) -> bool:
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                      "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return attrs == {"ApproximateNumberOfMessages": "0",
                     "ApproximateNumberOfMessagesNotVisible": "0"}


def test_a_manifest_put_in_the_bucket_becomes_a_job_through_sqs(
        bucket_with_inbox: tuple[str, str], settings: Settings) -> None:
    bucket, url = bucket_with_inbox
    s3 = boto3.client("s3")
    index = Index(settings.db)
    # Given an inbox that found its queue in the bucket's notification configuration
    inbox = S3Inbox.from_uri(f"s3://{bucket}/manifests/")
    assert inbox.queue_url == url
    ingest = Ingest(settings, index, inbox, model=MODEL)
    # When a manifest with a deadline is put under the prefix, and a photo elsewhere
    s3.put_object(Bucket=bucket, Key="photos/a b.jpg", Body=b"photo")
    s3.put_object(Bucket=bucket, Key="manifests/day 1.json", Body=json.dumps(
        {"items": ["a b.jpg", "c.jpg"], "deadline_s": 1800}).encode())
    made = jobs_from(ingest, 1)
    # Then one job reads its keys from the manifest's folder, with its deadline
    assert len(made) == 1
    job = index.job(made[0])
    assert (job.counts.total, job.deadline_s) == (2, 1800.0)
    assert job.input == f"s3://{bucket}/manifests/"
    # And the message is gone, with the configuration's test event
    assert _queue_is_empty(url)
    # When S3 notifies the same object version again (at-least-once delivery)
    head = s3.head_object(Bucket=bucket, Key="manifests/day 1.json")
    boto3.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps({"Records": [{
        "eventName": "ObjectCreated:Put", "eventTime": "2030-01-01T00:00:00.000Z",
        "s3": {"bucket": {"name": bucket}, "object": {
            "key": "manifests/day+1.json", "eTag": head["ETag"].strip('"')}}}]}))
    made = []
    deadline = time.monotonic() + 30
    while not _queue_is_empty(url) and time.monotonic() < deadline:
        made += ingest.poll()
    # Then the duplicate was consumed, and there is still one job
    assert _queue_is_empty(url)
    assert made == [] and len(index.jobs()) == 1


def test_a_bad_manifest_in_the_bucket_is_refused_and_not_retried(
        bucket_with_inbox: tuple[str, str], settings: Settings) -> None:
    bucket, url = bucket_with_inbox
    index = Index(settings.db)
    ingest = Ingest(settings, index, S3Inbox.from_uri(f"s3://{bucket}/manifests/"),
                    model=MODEL)
    # When a manifest with a hostile key lands
    boto3.client("s3").put_object(Bucket=bucket, Key="manifests/evil.txt",
                                  Body=b"a.jpg\n../../etc/passwd\n")
    deadline = time.monotonic() + 30
    while not FleetRecords(index).manifests() and time.monotonic() < deadline:
        ingest.poll()
    # Then no job; it is recorded as refused with the reason, and its message is gone
    assert index.jobs() == []
    [record] = FleetRecords(index).manifests()
    assert record["state"] == "refused" and "'..' segment" in record["reason"]
    assert _queue_is_empty(url)


def test_an_inbox_without_notifications_says_how_to_set_them_up(aws: MotoServer) -> None:
    bucket = "bare-" + secrets.token_hex(4)
    boto3.client("s3").create_bucket(Bucket=bucket)
    with pytest.raises(ConfigError, match="notifications"):
        S3Inbox.from_uri(f"s3://{bucket}/manifests/")


# -- the Auto Scaling group provider ------------------------------------------------------------


def _describe(name: str) -> dict[str, Any]:
    return dict(boto3.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"][0])


def test_the_group_is_spot_first_with_a_drain_hook(group: str) -> None:
    described = _describe(group)
    distribution = described["MixedInstancesPolicy"]["InstancesDistribution"]
    assert distribution["OnDemandBaseCapacity"] == 0
    assert distribution["OnDemandPercentageAboveBaseCapacity"] == 0
    assert described["NewInstancesProtectedFromScaleIn"] is True
    [hook] = boto3.client("autoscaling").describe_lifecycle_hooks(
        AutoScalingGroupName=group)["LifecycleHooks"]
    assert (hook["LifecycleHookName"], hook["LifecycleTransition"]) == (
        HOOK, "autoscaling:EC2_INSTANCE_TERMINATING")


def test_launch_protect_and_drain_drive_the_group(group: str, settings: Settings) -> None:
    provider = AwsProvider(settings, model=MODEL, group=group)
    assert provider.machines() == []
    # When two spot workers and one on-demand are launched
    provider.launch(2, Capacity.SPOT)
    provider.launch(1, Capacity.ON_DEMAND)
    # Then the group wants three, one of them on-demand, and has them
    described = _describe(group)
    assert described["DesiredCapacity"] == 3
    assert described["MixedInstancesPolicy"]["InstancesDistribution"][
        "OnDemandBaseCapacity"] == 1
    machines = provider.machines()
    assert len(machines) == 3 and not any(m.draining for m in machines)
    # When one is busy: only it is protected from scale-in
    busy, idle = machines[0].id, machines[1].id
    provider.protect([busy])
    protection = {i["InstanceId"]: i["ProtectedFromScaleIn"]
                  for i in _describe(group)["Instances"]}
    assert protection[busy] is True and protection[idle] is False
    # When an idle one is drained: terminated through the group, which wants one fewer
    provider.drain([idle])
    assert _describe(group)["DesiredCapacity"] == 2
    assert idle not in {m.id for m in provider.machines()}
    assert provider.spot_refused() is False


def test_spot_refusals_are_read_from_failed_launch_activities() -> None:
    now = time.time()

    class At:
        def __init__(self, t: float) -> None:
            self.t = t

        def timestamp(self) -> float:
            return self.t

    failed = {"StatusCode": "Failed", "StartTime": At(now - 60),
              "StatusMessage": "Could not launch Spot Instances. InsufficientInstanceCapacity"}
    assert spot_refused_in([failed], now=now)
    assert not spot_refused_in([{**failed, "StartTime": At(now - 3600)}], now=now)
    assert not spot_refused_in([{**failed, "StatusCode": "Successful"}], now=now)


def test_the_controller_sizes_the_group_to_the_backlog_and_back_to_zero(
        group: str, settings: Settings) -> None:
    # Given a job of 200 000 items at 10 ms each, due in 30 minutes, and nothing running
    index = Index(settings.db)
    keys = [f"p{i:06d}.jpg" for i in range(200_000)]
    enqueue_job(settings, index, "job-1", keys, input="file:///in/", output="file:///out/",
                model=MODEL, deadline_s=1800)
    provider = AwsProvider(settings, model=MODEL, group=group)
    config = PolicyConfig(max_workers=4, cooldown_s=60)
    ctl = Controller(settings, index, provider, model=MODEL, config=config,
                     estimates=Estimates.for_model(MODEL))
    # When the controller ticks
    decision = ctl.tick()
    # Then the group wants the least fleet that meets the deadline (2000 s of work, 5 min boot)
    assert decision.desired == 2 and decision.start == (Capacity.SPOT, Capacity.SPOT)
    assert _describe(group)["DesiredCapacity"] == 2
    # When the work is done and the workers have been idle past the cool-down
    queue = open_queue(settings.queue, name=MODEL)
    while leases := queue.receive(100, visibility_timeout_s=60):
        for lease in leases:
            queue.ack(lease)
    index.fail_pending("job-1", keys, error="test: done elsewhere")
    for machine in provider.machines():
        index.worker_seen(f"w-{machine.id}", host="ec2", pid=1, model=MODEL, state="ready",
                          bootstrap_s=300.0, extra={"instance": machine.id,
                                                    "state_since": time.time() - 120})
    decision = ctl.tick()
    # Then both are drained through the group, which goes back to zero
    assert len(decision.drain) == 2 and decision.desired == 0
    assert _describe(group)["DesiredCapacity"] == 0
    assert provider.machines() == []
    queue.close()
    ctl.close()


def test_the_controller_runs_on_aws_with_only_aws_region_set(
        group: str, bucket_with_inbox: tuple[str, str], aws: MotoServer, home: Home) -> None:
    # Given the AWS configuration the README shows: AWS_REGION, no AWS_DEFAULT_REGION
    bucket, _ = bucket_with_inbox
    home.env.update(aws.env, AWS_ENDPOINT_URL_AUTO_SCALING=aws.endpoint,
                    AWS_ENDPOINT_URL_EC2=aws.endpoint, GPUFLEET_AWS_ASG=group)
    del home.env["AWS_DEFAULT_REGION"]
    # When the controller decides once on the Auto Scaling group, with an S3 inbox
    home.run("controller", "--provider", "aws", "--inbox", f"s3://{bucket}/manifests/",
             "--model", MODEL, "--once")
    # Then it reached both (an empty inbox, no backlog: nothing to start) and recorded it
    [decision] = home.json("fleet", "--model", MODEL)["decisions"]
    assert decision["desired"] == 0
