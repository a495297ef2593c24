"""The interface every streaming source implements, and the URL registry of sources.

A source hands out records in stream order and is told, after their window's job is
enqueued, that they are done (``ack``): Kinesis saves each shard's sequence number in
the index, Redis Streams XACKs, NATS JetStream acks, SQS deletes. Until then a record
is not done: after a crash the source offers it again (from the checkpoint, from the
pending entries list, after the ack wait, after the visibility timeout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from gpufleet.index import Index
from gpufleet.registry import Registry


@dataclass(frozen=True, slots=True)
class Record:
    """One stream record: its position (unique in the stream), its bytes, the source's
    handle for acknowledging it."""

    position: str
    data: bytes
    token: Any = None


class StreamSource(Protocol):
    uri: str  # where it reads, without secrets: names the stream in the index
    hold_s: float  # the longest a record may stay unacknowledged before it is redelivered

    def read(self, max_records: int, *, wait_s: float) -> list[Record]:
        """Up to max_records records, in order; waits up to wait_s when none is there."""
        ...

    def ack(self, records: Sequence[Record]) -> None:
        """These records' window is enqueued: never offer them again."""
        ...

    def close(self) -> None: ...


SOURCES = Registry("stream source", {
    "kinesis": "gpufleet.streams.kinesis:KinesisSource.from_uri",
    "redis": "gpufleet.streams.redis:RedisStreamSource.from_uri",
    "rediss": "gpufleet.streams.redis:RedisStreamSource.from_uri",
    "nats": "gpufleet.streams.nats:JetStreamSource.from_uri",
    "sqs": "gpufleet.streams.sqs:SqsEventSource.from_uri",
    "kafka": "gpufleet.streams.kafka:KafkaSource.from_uri",
}, expected="kinesis://STREAM, redis://HOST:PORT/DB?stream=NAME, nats://HOST:PORT/STREAM, "
             "sqs://QUEUE or kafka://BROKER:PORT/TOPIC")


def open_source(uri: str, *, index: Index, consumer: str) -> StreamSource:
    """The source at uri; consumer names this reader (a Redis or NATS consumer)."""
    opener = SOURCES.load(urlsplit(uri).scheme, shown=uri)
    source: StreamSource = opener(uri, index=index, consumer=consumer)
    return source
