"""S3 event notifications through SQS as a source: messages deleted once enqueued.

``sqs://QUEUE`` (a queue name in ``AWS_REGION``), with optional ``visibility_s=``
(default 120): how long a received message stays hidden, so the longest a window may
hold it. Each message body is a record: an S3 event document (plain, or wrapped by
SNS), read by ``streams.records`` with ``intake.s3``'s parser, or an object key. This
is the inbox's queue (``intake.s3``) turned the other way: there each object named is a
manifest, here it is an item.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gpufleet import aws
from gpufleet.errors import ConfigError
from gpufleet.index import Index
from gpufleet.intake.s3 import call
from gpufleet.streams.source import Record

log = logging.getLogger(__name__)
_MAX_WAIT_S = 20  # SQS's longest long poll


class SqsEventSource:
    def __init__(self, queue: str, *, visibility_s: int = 120) -> None:
        self.uri = f"sqs://{queue}"
        self.hold_s = float(visibility_s)
        self.sqs = aws.client("sqs")
        self.queue_url = str(self._call("get queue URL", self.sqs.get_queue_url,
                                        QueueName=queue)["QueueUrl"])

    @classmethod
    def from_uri(cls, uri: str, *, index: Index, consumer: str) -> SqsEventSource:
        parts = urlsplit(uri)
        if not parts.netloc:
            raise ConfigError(f"stream source {uri!r} names no queue: sqs://QUEUE")
        query = dict(parse_qsl(parts.query))
        try:
            visibility = int(query.get("visibility_s", "120"))
        except ValueError:
            raise ConfigError(f"stream source {uri!r}: visibility_s is not a whole number"
                              ) from None
        return cls(parts.netloc, visibility_s=visibility)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        return call(self.uri, what, fn, **kwargs)

    def read(self, max_records: int, *, wait_s: float) -> list[Record]:
        if max_records <= 0:
            return []
        reply = self._call("receive", self.sqs.receive_message, QueueUrl=self.queue_url,
                           MaxNumberOfMessages=min(10, max_records),
                           WaitTimeSeconds=min(_MAX_WAIT_S, int(wait_s)),
                           VisibilityTimeout=int(self.hold_s))
        return [Record(m["MessageId"], m.get("Body", "").encode("utf-8", "surrogatepass"),
                       m["ReceiptHandle"]) for m in reply.get("Messages", [])]

    def ack(self, records: Sequence[Record]) -> None:
        for i in range(0, len(records), 10):
            page = records[i:i + 10]
            reply = self._call("delete messages", self.sqs.delete_message_batch,
                               QueueUrl=self.queue_url,
                               Entries=[{"Id": str(n), "ReceiptHandle": r.token}
                                        for n, r in enumerate(page)])
            if failed := reply.get("Failed"):  # they come back, and are dropped as seen
                log.warning("stream %s: %d message(s) not deleted: %s", self.uri, len(failed),
                            failed[0].get("Message") or failed[0].get("Code"))

    def close(self) -> None:
        pass
