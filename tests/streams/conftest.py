"""Each real source behind one fixture: a way to put records on it and to open a reader.

``feed`` is parametrised over Redis Streams (redis-server), Amazon Kinesis (moto in
server mode), NATS JetStream (nats-server -js) and S3 event notifications through SQS
(moto: a real bucket notifies a real queue). Opening the source again gives a fresh
connection with the same consumer name: what a restarted ``gpufleet stream`` does.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from gpufleet.config import Settings
from gpufleet.index import Index
from gpufleet.models.base import canonical_spec
from gpufleet.streams.consumer import JobTemplate, StreamConsumer, WindowRules
from gpufleet.streams.source import Record, StreamSource, open_source
from tests.servers import MotoServer, NatsServer, RedisServer

MODEL = canonical_spec("synthetic?item_ms=1")


@dataclass
class Feed:
    """A stream: put(key) adds a record naming that key; uri opens it."""

    uri: str
    put: Callable[[str], None]
    input: str | None  # where its bare keys live; None: its records say (S3 events)
    redelivery_s: float = 0.0  # how long an unacknowledged record takes to come back


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"GPUFLEET_HOME": str(tmp_path / "home"),
                              "GPUFLEET_MODEL": MODEL})


@pytest.fixture
def index(settings: Settings) -> Iterator[Index]:
    idx = Index(settings.db)
    yield idx
    idx.close()


def redis_feed(server: RedisServer, input: str) -> Feed:
    import redis

    client = redis.Redis.from_url(server.url)
    stream = "keys-" + secrets.token_hex(4)
    return Feed(f"{server.url}?stream={stream}",
                lambda key: client.xadd(stream, {"key": key}), input, redelivery_s=0.0)


def kinesis_feed(input: str) -> Feed:
    kinesis = boto3.client("kinesis")
    stream = "keys-" + secrets.token_hex(4)
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    return Feed(f"kinesis://{stream}", lambda key: kinesis.put_record(
        StreamName=stream, Data=key.encode(), PartitionKey=key), input)


def nats_feed(server: NatsServer, input: str) -> Feed:
    import asyncio

    import nats

    stream = "keys" + secrets.token_hex(4)

    async def publish(*keys: str, create: bool = False) -> None:
        conn = await nats.connect(server.url)
        js = conn.jetstream()
        if create:
            await js.add_stream(name=stream, subjects=[f"{stream}.keys"])
        for key in keys:
            await js.publish(f"{stream}.keys", key.encode())
        await conn.close()

    asyncio.run(publish(create=True))
    return Feed(f"{server.url}/{stream}?ack_wait_s=1", lambda key: asyncio.run(publish(key)),
                input, redelivery_s=1.2)


def sqs_feed() -> Feed:
    """A bucket whose ObjectCreated events go to a queue: putting a key uploads the object."""
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    bucket, queue = "photos-" + secrets.token_hex(4), "events-" + secrets.token_hex(4)
    s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    sqs.purge_queue(QueueUrl=url)  # the s3:TestEvent the configuration sent
    return Feed(f"sqs://{queue}?visibility_s=1",
                lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b"x"), None,
                redelivery_s=1.2)


@pytest.fixture(params=["redis", "kinesis", "nats", "sqs"])
def feed(request: pytest.FixtureRequest, tmp_path: Path) -> Feed:
    input = (tmp_path / "photos").as_uri() + "/"
    (tmp_path / "photos").mkdir()
    if request.param == "redis":
        return redis_feed(request.getfixturevalue("redis_server"), input)
    if request.param == "nats":
        return nats_feed(request.getfixturevalue("nats_server"), input)
    aws: MotoServer = request.getfixturevalue("aws_env")
    assert aws.endpoint
    return kinesis_feed(input) if request.param == "kinesis" else sqs_feed()


JOB = JobTemplate(model=MODEL)


def consumer(settings: Settings, index: Index, feed: Feed, *, name: str = "c1",
             job: JobTemplate = JOB, **rules: Any) -> StreamConsumer:
    source: StreamSource = open_source(feed.uri, index=index, consumer=name)
    options = {"max_items": 5, "max_s": 30.0, "poll_s": 0.2, **rules}
    return StreamConsumer(settings, index, source, job=job, input=feed.input,
                          rules=WindowRules(**options))


def step_until(c: StreamConsumer, done: Callable[[], bool], *, timeout_s: float = 20.0,
               what: str = "the consumer") -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} ({c.stats})")
        c.step()


class _DiesBeforeAck:
    """The source of a consumer killed after it enqueued a window, before it acknowledged."""

    def __init__(self, source: StreamSource) -> None:
        self.inner = source

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def ack(self, records: list[Record]) -> None:
        raise KeyboardInterrupt("killed before acknowledging")


def crash_before_ack(c: StreamConsumer) -> None:
    """Run c until its first window is enqueued, and kill it there: nothing acknowledged."""
    real = c.source
    c.source = _DiesBeforeAck(real)  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        step_until(c, lambda: False, what="the crash")
    real.close()
