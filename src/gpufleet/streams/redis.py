"""Redis Streams as a source: a consumer group, XACK once the window is enqueued.

``redis://HOST:PORT/DB?stream=NAME`` (``rediss://`` for TLS), with optional
``group=`` (default ``gpufleet-stream``) and ``claim_idle_s=`` (default 60). The group is
made at the stream's start (``MKSTREAM``) if missing. An entry's record is its ``key``
field, else its only field (``XADD s * key photos/a.jpg``, or an S3 event as the value).

Reading goes: this consumer's own pending entries first (what it read before it died),
then entries other consumers left pending longer than ``claim_idle_s`` (``XAUTOCLAIM``:
they died), then new ones (``>``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gpufleet.errors import ConfigError, Unavailable
from gpufleet.index import Index
from gpufleet.redact import redact_url
from gpufleet.streams.source import Record

_ACK_PAGE = 1000


class RedisStreamSource:
    def __init__(self, url: str, *, stream: str, group: str, consumer: str,
                 claim_idle_s: float = 60.0) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigError("a Redis stream source needs redis-py: "
                              "pip install 'gpufleet[redis]'") from None
        self._errors = (redis.ConnectionError, redis.TimeoutError)
        self._response_error = redis.ResponseError
        parts = urlsplit(url)
        self.uri = f"{redact_url(urlunsplit(parts._replace(query='')))}?stream={stream}"
        self.stream, self.group, self.consumer = stream, group, consumer
        self.hold_s = claim_idle_s
        self._client: Any = redis.Redis.from_url(url, socket_connect_timeout=5,
                                                 socket_timeout=30)
        self._pending_after: str | None = "0"  # own pending entries after this id; None: done
        self._claimed_at = float("-inf")
        self._prepared = False

    @classmethod
    def from_uri(cls, uri: str, *, index: Index, consumer: str) -> RedisStreamSource:
        parts = urlsplit(uri)
        query = dict(parse_qsl(parts.query))
        stream = query.pop("stream", "")
        if not stream:
            raise ConfigError(f"stream source {redact_url(uri)!r}: say which stream: "
                              "?stream=NAME")
        group = query.pop("group", "gpufleet-stream")
        try:
            idle = float(query.pop("claim_idle_s", "60"))
        except ValueError:
            raise ConfigError(f"stream source {redact_url(uri)!r}: claim_idle_s is not a "
                              "number") from None
        target = urlunsplit(parts._replace(query=urlencode(query)))
        return cls(target, stream=stream, group=group, consumer=consumer, claim_idle_s=idle)

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise Unavailable(f"stream {self.uri}: {exc}") from exc
        except self._response_error as exc:
            if "NOGROUP" not in str(exc):  # WRONGTYPE: the key is no stream, say
                raise ConfigError(f"stream {self.uri}: {exc}") from exc
            self._prepared = False  # the stream was deleted: its group is made again
            raise Unavailable(f"stream {self.uri}: {exc}") from exc

    def _prepare(self) -> None:
        with self._translate():
            try:
                self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except self._response_error as exc:
                if "BUSYGROUP" not in str(exc):
                    raise ConfigError(f"stream {self.uri}: {exc}") from exc
        self._prepared = True

    def read(self, max_records: int, *, wait_s: float) -> list[Record]:
        if max_records <= 0:
            return []
        if not self._prepared:
            self._prepare()
        with self._translate():
            if self._pending_after is not None:  # what this consumer read before it died
                found = self._group_read(self._pending_after, max_records, None)
                if found:
                    self._pending_after = found[-1].position
                    return found
                self._pending_after = None
            now = time.monotonic()
            if now - self._claimed_at >= self.hold_s / 2:
                self._claimed_at = now
                reply = self._client.xautoclaim(self.stream, self.group, self.consumer,
                                                min_idle_time=int(self.hold_s * 1000),
                                                start_id="0-0", count=max_records)
                if claimed := [self._record(eid, f) for eid, f in reply[1] if f is not None]:
                    return claimed
            return self._group_read(">", max_records, max(1, int(wait_s * 1000)))

    def _group_read(self, start: str, count: int, block_ms: int | None) -> list[Record]:
        reply = self._client.xreadgroup(self.group, self.consumer, {self.stream: start},
                                        count=count, block=block_ms)
        if not reply:
            return []
        # An entry trimmed away while pending comes back with no fields: nothing to read.
        entries = reply[0][1]
        gone = [eid for eid, fields in entries if not fields]
        if gone:
            self._client.xack(self.stream, self.group, *gone)
        return [self._record(eid, fields) for eid, fields in entries if fields]

    def _record(self, eid: bytes, fields: dict[bytes, bytes]) -> Record:
        if b"key" in fields:
            data = fields[b"key"]
        elif len(fields) == 1:
            data = next(iter(fields.values()))
        else:  # read_record rejects it, showing what it was
            data = json.dumps({k.decode(errors="replace"): v.decode(errors="replace")
                               for k, v in fields.items()}).encode()
        return Record(eid.decode(), data, eid)

    def ack(self, records: Sequence[Record]) -> None:
        ids = [r.token for r in records]
        with self._translate():
            for i in range(0, len(ids), _ACK_PAGE):
                self._client.xack(self.stream, self.group, *ids[i:i + _ACK_PAGE])

    def close(self) -> None:
        self._client.close()
