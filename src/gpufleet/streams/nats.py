"""NATS JetStream as a source: a durable pull consumer, each message acked once enqueued.

``nats://HOST:PORT/STREAM`` with optional ``subject=`` (default: the stream's subject,
when it has one), ``durable=`` (default ``gpufleet-stream``) and ``ack_wait_s=``
(default 60: a message not acked this long after delivery is delivered again). The
stream must exist; the durable consumer is made on first use (explicit acks). A
message's data is the record. nats-py is asyncio: its loop runs in a thread of this
source, and each call waits for its coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from gpufleet.errors import ConfigError, Unavailable
from gpufleet.index import Index
from gpufleet.redact import redact_url
from gpufleet.streams.source import Record

T = TypeVar("T")
_CALL_TIMEOUT_S = 30.0


class JetStreamSource:
    def __init__(self, server: str, *, stream: str, subject: str, durable: str,
                 ack_wait_s: float = 60.0) -> None:
        try:
            import nats
            import nats.errors
            import nats.js.errors
        except ImportError:
            raise ConfigError("a NATS JetStream source needs nats-py: "
                              "pip install 'gpufleet[streams]'") from None
        self._nats = nats
        self.uri = f"{redact_url(server)}/{stream}" + (f"?subject={subject}" if subject else "")
        self.stream, self.subject, self.durable = stream, subject, durable
        self.hold_s = ack_wait_s
        self._server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="nats-source")
        self._thread.start()
        self._conn: Any = None
        self._sub: Any = None

    @classmethod
    def from_uri(cls, uri: str, *, index: Index, consumer: str) -> JetStreamSource:
        parts = urlsplit(uri)
        stream = parts.path.strip("/")
        if not stream or "/" in stream:
            raise ConfigError(f"stream source {redact_url(uri)!r}: name the JetStream stream: "
                              "nats://HOST:PORT/STREAM")
        query = dict(parse_qsl(parts.query))
        try:
            ack_wait = float(query.get("ack_wait_s", "60"))
        except ValueError:
            raise ConfigError(f"stream source {redact_url(uri)!r}: ack_wait_s is not a number"
                              ) from None
        server = f"{parts.scheme}://{parts.netloc}"
        return cls(server, stream=stream, subject=query.get("subject", ""),
                   durable=query.get("durable", "gpufleet-stream"), ack_wait_s=ack_wait)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(_CALL_TIMEOUT_S)
        except self._nats.js.errors.NotFoundError as exc:
            raise ConfigError(f"stream {self.uri}: {exc}") from exc
        except (self._nats.errors.Error, OSError, TimeoutError) as exc:
            raise Unavailable(f"stream {self.uri}: {str(exc) or type(exc).__name__}") from exc

    async def _subscribe(self) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig

        if self._conn is None or self._conn.is_closed:
            self._conn = await self._nats.connect(servers=[self._server], connect_timeout=5,
                                                  max_reconnect_attempts=3)
        js = self._conn.jetstream()
        subject = self.subject
        if not subject:
            subjects = (await js.stream_info(self.stream)).config.subjects or []
            if len(subjects) != 1:
                raise ConfigError(f"stream {self.uri} has {len(subjects)} subjects: say "
                                  "which to read, ?subject=NAME")
            subject = subjects[0]
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=self.hold_s)
        return await js.pull_subscribe(subject, durable=self.durable, stream=self.stream,
                                       config=config)

    async def _fetch(self, count: int, wait_s: float) -> list[Any]:
        if self._sub is None:
            self._sub = await self._subscribe()
        try:
            return list(await self._sub.fetch(count, timeout=max(0.2, wait_s)))
        except TimeoutError:
            # Nothing came in time. nats-py says so with its own TimeoutError (a subclass),
            # and with a bare one (asyncio's) when the server's answer to its first probe
            # lands as the deadline runs out (about 1 empty fetch in 100 on localhost;
            # since nats-py 2.15, nats-io/nats.py#1008).
            return []

    def read(self, max_records: int, *, wait_s: float) -> list[Record]:
        if max_records <= 0:
            return []
        messages = self._run(self._fetch(max_records, wait_s))
        return [Record(str(m.metadata.sequence.stream), bytes(m.data), m) for m in messages]

    def ack(self, records: Sequence[Record]) -> None:
        async def ack_all() -> None:
            # ack_sync: the server confirms each ack, so none is lost on the way
            await asyncio.gather(*(r.token.ack_sync(timeout=10) for r in records))

        if records:
            self._run(ack_all())

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Unavailable):  # closing: nothing more to lose
                self._run(self._conn.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
