"""Apache Kafka as a source: a consumer group, offsets committed once the window is
enqueued. NOT tested against a broker (none runs here): see README, Streaming sources.

``kafka://BROKER:9092[,BROKER2:9092]/TOPIC`` with optional ``group=`` (default
``gpufleet-stream``). Auto-commit is off: each partition's offset is committed
(synchronously) only after the window holding its records is enqueued, so a consumer
that dies before reads them again from the last commit. A new group starts at the
earliest offset. A message's value is the record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gpufleet.errors import ConfigError, Unavailable
from gpufleet.index import Index
from gpufleet.streams.source import Record

log = logging.getLogger(__name__)


class KafkaSource:
    hold_s = 300.0  # max.poll.interval.ms: a consumer silent longer leaves its group

    def __init__(self, servers: str, *, topic: str, group: str) -> None:
        try:
            import confluent_kafka
        except ImportError:
            raise ConfigError("a Kafka source needs confluent-kafka: "
                              "pip install 'gpufleet[kafka]'") from None
        self._kafka: Any = confluent_kafka
        self.uri = f"kafka://{servers}/{topic}"
        self.topic = topic
        try:
            self._consumer: Any = confluent_kafka.Consumer({
                "bootstrap.servers": servers, "group.id": group,
                "enable.auto.commit": False, "auto.offset.reset": "earliest"})
            self._consumer.subscribe([topic])
        except confluent_kafka.KafkaException as exc:
            raise ConfigError(f"stream {self.uri}: {exc}") from exc

    @classmethod
    def from_uri(cls, uri: str, *, index: Index, consumer: str) -> KafkaSource:
        parts = urlsplit(uri)
        topic = parts.path.strip("/")
        if not parts.netloc or not topic or "/" in topic:
            raise ConfigError(f"stream source {uri!r}: kafka://BROKER:PORT/TOPIC")
        group = dict(parse_qsl(parts.query)).get("group", "gpufleet-stream")
        return cls(parts.netloc, topic=topic, group=group)

    def read(self, max_records: int, *, wait_s: float) -> list[Record]:
        if max_records <= 0:
            return []
        try:
            messages = self._consumer.consume(num_messages=max_records, timeout=wait_s)
        except self._kafka.KafkaException as exc:
            raise Unavailable(f"stream {self.uri}: {exc}") from exc
        records = []
        for m in messages:
            if m.error():
                if m.error().fatal():
                    raise Unavailable(f"stream {self.uri}: {m.error()}")
                log.warning("stream %s: %s", self.uri, m.error())
                continue
            records.append(Record(f"{m.topic()}:{m.partition()}:{m.offset()}",
                                  bytes(m.value() or b""), (m.topic(), m.partition(), m.offset())))
        return records

    def ack(self, records: Sequence[Record]) -> None:
        newest: dict[tuple[str, int], int] = {}
        for record in records:
            topic, partition, offset = record.token
            newest[topic, partition] = max(offset, newest.get((topic, partition), -1))
        if not newest:
            return
        offsets = [self._kafka.TopicPartition(t, p, o + 1) for (t, p), o in newest.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except self._kafka.KafkaException as exc:  # e.g. rebalanced: the new owner re-reads
            raise Unavailable(f"stream {self.uri}: commit: {exc}") from exc

    def close(self) -> None:
        self._consumer.close()
