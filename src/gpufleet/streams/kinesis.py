"""Amazon Kinesis Data Streams as a source: each shard's sequence number checkpointed in
the index once the window holding it is enqueued.

``kinesis://STREAM`` (in ``AWS_REGION``), with optional ``from=trim_horizon`` (default:
a shard with no checkpoint is read from its oldest record) or ``from=latest``. A record's
data is its bytes: an object key, an ``s3://`` URI, or an S3 event document.

One consumer per stream: there is no lease table (as the Kinesis Client Library keeps
in DynamoDB) sharing shards between processes. Shards are listed again every minute, so
the children of a split or merge are read too, though not strictly after their parents.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gpufleet import aws
from gpufleet.errors import ConfigError, GpufleetError, Unavailable
from gpufleet.index import Index
from gpufleet.index.stream_records import StreamRecords
from gpufleet.streams.source import Record

_LIST_EVERY_S = 60.0
_IDLE_POLL_S = 0.25  # GetRecords allows 5 calls per second per shard


class KinesisSource:
    hold_s = float("inf")  # a record is never redelivered: it is re-read from the checkpoint

    def __init__(self, stream: str, *, index: Index, start: str = "TRIM_HORIZON") -> None:
        self.uri = f"kinesis://{stream}"
        self.stream, self.start = stream, start
        self.checkpoints = StreamRecords(index)
        self.kinesis = aws.client("kinesis")
        self._iterators: dict[str, str | None] = {}  # shard -> next iterator; None: closed
        self._after: dict[str, str] = {}  # shard -> last sequence number read
        self._listed_at = float("-inf")

    @classmethod
    def from_uri(cls, uri: str, *, index: Index, consumer: str) -> KinesisSource:
        parts = urlsplit(uri)
        if not parts.netloc:
            raise ConfigError(f"stream source {uri!r} names no stream: kinesis://STREAM")
        start = dict(parse_qsl(parts.query)).get("from", "trim_horizon").upper()
        if start not in ("TRIM_HORIZON", "LATEST"):
            raise ConfigError(f"stream source {uri!r}: from= is trim_horizon or latest")
        return cls(parts.netloc, index=index, start=start)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(what, exc) from exc

    def _error(self, what: str, exc: Exception) -> GpufleetError:
        """A driver error as ConfigError (the stream is not there) or Unavailable."""
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("ResourceNotFoundException", "AccessDeniedException"):
            return ConfigError(f"stream {self.uri}: {what}: {code}")
        return Unavailable(f"stream {self.uri}: {what}: {code or exc}")

    def _list_shards(self) -> None:
        shards: list[str] = []
        token: dict[str, str] = {"StreamName": self.stream}
        while True:
            reply = self._call("list shards", self.kinesis.list_shards, **token)
            shards += [s["ShardId"] for s in reply.get("Shards", [])]
            if not reply.get("NextToken"):
                break
            token = {"NextToken": reply["NextToken"]}
        saved = self.checkpoints.checkpoints(self.uri)
        for shard in shards:
            if shard not in self._iterators:
                self._after.setdefault(shard, saved.get(shard, ""))
                self._iterators[shard] = self._iterator(shard)
        self._listed_at = time.monotonic()

    def _iterator(self, shard: str) -> str:
        after = self._after.get(shard)
        where = ({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
                 if after else {"ShardIteratorType": self.start})
        reply = self._call("get shard iterator", self.kinesis.get_shard_iterator,
                           StreamName=self.stream, ShardId=shard, **where)
        return str(reply["ShardIterator"])

    def read(self, max_records: int, *, wait_s: float) -> list[Record]:
        if time.monotonic() - self._listed_at >= _LIST_EVERY_S:
            self._list_shards()
        found: list[Record] = []
        deadline = time.monotonic() + wait_s
        while max_records > len(found):
            for shard, iterator in list(self._iterators.items()):
                if iterator is None or len(found) >= max_records:
                    continue
                found += self._get(shard, iterator, min(10_000, max_records - len(found)))
            if found or time.monotonic() + _IDLE_POLL_S > deadline:
                break
            time.sleep(_IDLE_POLL_S)
        return found

    def _get(self, shard: str, iterator: str, limit: int) -> list[Record]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply = self.kinesis.get_records(ShardIterator=iterator, Limit=limit)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ExpiredIteratorException":  # idle over 5 minutes: start again
                self._iterators[shard] = self._iterator(shard)
                return []
            if code == "ProvisionedThroughputExceededException":
                return []  # read again at the next call
            raise self._error("get records", exc) from exc
        except BotoCoreError as exc:
            raise self._error("get records", exc) from exc
        self._iterators[shard] = reply.get("NextShardIterator")  # None: a closed shard, done
        records = [Record(f"{shard}:{r['SequenceNumber']}", bytes(r["Data"]),
                          (shard, r["SequenceNumber"])) for r in reply.get("Records", [])]
        if records:
            self._after[shard] = records[-1].token[1]
        return records

    def ack(self, records: Sequence[Record]) -> None:
        newest: dict[str, str] = {}
        for record in records:
            shard, sequence = record.token
            if shard not in newest or int(sequence) > int(newest[shard]):
                newest[shard] = sequence
        self.checkpoints.save_checkpoints(self.uri, newest)

    def close(self) -> None:
        pass
