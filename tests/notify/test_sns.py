"""SNS topics in moto's server: events carry attributes that subscriptions' filter policies
route on, so each SQS queue gets only the tenant's or the state's it asked for."""

from __future__ import annotations

import json
from typing import Any

import boto3

from gpufleet.domain import ItemStatus
from tests.notify.conftest import Notifying
from tests.servers import MotoServer


def _queue(sqs: Any, sns: Any, topic: str, name: str, policy: dict[str, list[str]]) -> str:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]
                                   )["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={
        "FilterPolicy": json.dumps(policy), "RawMessageDelivery": "true"})
    return str(url)


def _bodies(sqs: Any, url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10
                                          ).get("Messages"):
        found += [json.loads(m["Body"]) for m in messages]
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
    return found


def test_filter_policies_route_events_by_tenant_and_state(aws_env: MotoServer,
                                                          notifying: Notifying) -> None:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="gpufleet-events")["TopicArn"]
    # Given a topic with a queue for tenant a's events and one for every failed job
    tenant_a = _queue(sqs, sns, topic, "tenant-a", {"tenant": ["a"]})
    failures = _queue(sqs, sns, topic, "failures", {"state": ["failed"],
                                                     "event": ["job.finished"]})
    notifying.targets.add(topic, tenant="a")
    notifying.targets.add(topic, tenant="b")
    # When a job of a succeeds and a job of b fails, and the dispatcher delivers
    job_a, job_b = notifying.job("job-a", items=1), notifying.job("job-b", items=1, tenant="b")
    notifying.finish(job_a, ["k0"])
    notifying.finish(job_b, ["k0"], ItemStatus.FAILED)
    done = notifying.dispatcher().run_once()
    # Then four events were published; a's queue has a's two, the failures queue b's end
    assert done.delivered == 4
    assert sorted((b["job"]["job"], b["event"]) for b in _bodies(sqs, tenant_a)) == [
        ("job-a", "job.created"), ("job-a", "job.finished")]
    assert [(b["job"]["job"], b["state"]) for b in _bodies(sqs, failures)] == [
        ("job-b", "failed")]


def test_a_missing_topic_fails_the_event_with_snss_reason(aws_env: MotoServer,
                                                          notifying: Notifying) -> None:
    job = notifying.job("job-n", items=1)
    notifying.targets.add("arn:aws:sns:us-east-1:123456789012:no-such-topic", tenant="a",
                          job_id=job, events="created")
    done = notifying.dispatcher().run_once()
    assert done.failed == 1
    (attempt,) = notifying.dispatcher().outbox.log(job_id=job)
    assert not attempt.ok and "SNS NotFound" in (attempt.error or "")
