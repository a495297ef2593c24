"""The Redis Streams queue: ``redis://host:port/db`` (or ``rediss://`` for TLS).

One queue is a handful of keys under one hash tag, ``<namespace>:{<name>}:``
(namespace ``gpufleet`` unless the URL says ``?namespace=...``):

- ``stream``: the tasks, one entry each (``id`` task id, ``r`` receives before
  this entry, ``b`` body), read through the consumer group ``workers``.
- A **lease is a pending entry** (in the group's PEL). Leases of any length
  share one expiry rule: an entry idle for ``HORIZON_S`` (12 h) has run out and
  ``XAUTOCLAIM`` reclaims it. Receiving or heartbeating with a timeout of ``v``
  sets the entry's idle time to ``HORIZON_S - v`` (``XCLAIM ... IDLE ... JUSTID``,
  which does not count as a delivery), so it runs out ``v`` from now. Entries
  deleted under a pending id are dropped from the PEL by ``XAUTOCLAIM`` itself
  and logged; they are never looped on.
- The **lease token** is ``<entry id>/<delivery count>/<queue tag>``. Every
  delivery of an entry (``XREADGROUP``, then each ``XAUTOCLAIM``) raises its
  delivery count, so once another consumer has reclaimed the task the old
  token's count no longer matches and extend, ack, release and dead_letter
  refuse it; once the entry is acked or parked it is not pending at all. The
  check and the change run in one Lua script. (A lease whose time has run out
  still settles until someone else receives the task, as on SQLite.)
- ``delayed`` (sorted set, due time in ms) and ``parked`` (hash, task id ->
  receives and body) hold tasks waiting out a delay or a nack backoff; each
  receive first moves the due ones back onto the stream, in the same script.
- ``dead``: a stream of dead letters with their receives and last error;
  ``seq``: the task id counter. Ack is ``XACK`` + ``XDEL``: nothing is left behind.

All times are the Redis server's (``TIME``, idle times), so workers' clocks
never matter. Every process uses the same consumer name: ownership is the token,
not the consumer. Redis must not evict keys: a warning is logged at start-up if
``maxmemory-policy`` is not ``noeviction``. Run Redis with AOF (``appendonly
yes``) so a restart loses nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gpufleet.errors import ConfigError, QueueUnavailable, TaskTooLarge
from gpufleet.queue import redis_lua
from gpufleet.queue.base import DeadLetter, Lease, QueueBase, QueueDepth
from gpufleet.redact import redact_url

try:
    import redis
    from redis.backoff import EqualJitterBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - the extra is installed in development
    raise ConfigError("the Redis queue needs redis-py: pip install 'gpufleet[redis]'") from exc

__all__ = ["HORIZON_S", "RedisQueue"]

log = logging.getLogger(__name__)

HORIZON_S = 43_200.0  # the longest lease, as on SQS; every lease ends when idle this long
GROUP, CONSUMER = "workers", "gpufleet"
_MAX_WAIT_S = 5.0  # longest blocking read while waiting for a task
_PAGE = 500
_SCRIPTS = {n: getattr(redis_lua, n) for n in
            ("ENQUEUE", "RECEIVE", "EXTEND", "ACK", "RELEASE", "DEAD_LETTER", "REDRIVE", "DEPTH")}
_checked_servers: set[str] = set()  # eviction policy checked once per server per process


class RedisQueue(QueueBase):
    """The queue called ``name`` on the Redis server at ``url``; see the module docstring."""

    supports_delay = True
    max_message_bytes = 1 << 20

    def __init__(self, url: str, *, name: str) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        namespace = query.pop("namespace", "gpufleet")
        target = urlunsplit(parts._replace(query=urlencode(query)))
        self.name = name
        try:
            self.where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"
        except ValueError as exc:
            raise ConfigError(f"bad Redis queue URL {redact_url(url)!r}: {exc}") from exc
        prefix = f"{namespace}:{{{name}}}:"
        self.keys = [prefix + k for k in ("stream", "delayed", "parked", "dead", "seq")]
        self._tag = hashlib.sha1(prefix.encode()).hexdigest()[:8]
        try:
            self._client = redis.Redis.from_url(
                target, socket_connect_timeout=5, socket_timeout=_MAX_WAIT_S + 25,
                health_check_interval=30, retry=Retry(EqualJitterBackoff(0.5, 0.05), 1))
        except ValueError as exc:
            raise ConfigError(f"bad Redis queue URL {redact_url(url)!r}: {exc}") from exc
        self._scripts = {n: self._client.register_script(s) for n, s in _SCRIPTS.items()}
        self._prepared = False  # group made and policy checked: lazily, so an outage at
        # start-up is a retryable QueueUnavailable, not a crash

    def enqueue(self, bodies: Sequence[str], *, delay_s: float = 0.0) -> None:
        encoded = [body.encode() for body in bodies]
        for data in encoded:
            if len(data) > self.max_message_bytes:
                raise TaskTooLarge(
                    f"task body of {len(data)} bytes is over this queue's limit of "
                    f"{self.max_message_bytes} bytes (max_message_bytes); put fewer items "
                    "in each task")
        page: list[bytes] = []
        size = 0
        for data in encoded:  # one script per 500 bodies or 8 MiB, whichever comes first
            if page and (len(page) == _PAGE or size + len(data) > 8 << 20):
                self._run("ENQUEUE", _ms(delay_s), *page)
                page, size = [], 0
            page.append(data)
            size += len(data)
        if page:
            self._run("ENQUEUE", _ms(delay_s), *page)

    def receive(self, max_tasks: int, *, visibility_timeout_s: float,
                wait_s: float = 0.0) -> list[Lease]:
        if max_tasks <= 0:
            return []
        lease_ms = _ms(_lease_s(visibility_timeout_s))
        leases = self._receive(max_tasks, lease_ms)
        if not leases and wait_s > 0:
            # Block until an entry is added after the newest one, then look again.
            with self._translate():
                newest: Any = self._client.xrevrange(self.keys[0], count=1)
                after: bytes = newest[0][0] if newest else b"0-0"
                self._client.xread({self.keys[0]: after}, count=1,
                                   block=_ms(min(wait_s, _MAX_WAIT_S)))
            leases = self._receive(max_tasks, lease_ms)
        return leases

    def _receive(self, max_tasks: int, lease_ms: int) -> list[Lease]:
        entries, dropped = self._run("RECEIVE", max_tasks, _ms(HORIZON_S), lease_ms)
        if dropped:
            log.warning("queue %r: %d leased task(s) had been deleted from the stream (trimmed?)"
                        " and were dropped", self.name, dropped)
        leases = []
        for eid, flat, count in entries:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            leases.append(Lease(fields[b"id"].decode(), fields[b"b"].decode(),
                                int(fields[b"r"]) + int(count),
                                f"{eid.decode()}/{count}/{self._tag}"))
        return leases

    def extend(self, lease: Lease, *, visibility_timeout_s: float) -> bool:
        idle_ms = _ms(HORIZON_S - _lease_s(visibility_timeout_s))
        return self._settle("EXTEND", lease, idle_ms)

    def ack(self, lease: Lease) -> bool:
        return self._settle("ACK", lease)

    def ack_batch(self, leases: Sequence[Lease]) -> list[bool]:
        """ack for each lease, in one round trip."""
        calls = [(i, self._parse(lease)) for i, lease in enumerate(leases)]
        held = [(i, token) for i, token in calls if token is not None]
        done = [False] * len(leases)
        if held:
            with self._translate():
                if not self._prepared:
                    self._prepare()
                pipe = self._client.pipeline(transaction=False)
                for _, (eid, count) in held:
                    self._scripts["ACK"](keys=self.keys, args=[GROUP, CONSUMER, eid, count],
                                         client=pipe)
                for (i, _), ok in zip(held, pipe.execute(), strict=True):
                    done[i] = int(ok) == 1
        return done

    def release(self, lease: Lease, *, delay_s: float = 0.0, error: str | None = None) -> bool:
        return self._settle("RELEASE", lease, _ms(delay_s))

    def dead_letter(self, lease: Lease, *, error: str) -> bool:
        return self._settle("DEAD_LETTER", lease, error)

    def dead_letters(self) -> list[DeadLetter]:
        letters, start = [], "-"
        while True:
            with self._translate():
                page: Any = self._client.xrange(self.keys[3], min=start, count=_PAGE)
            for _, f in page:
                letters.append(DeadLetter(f[b"id"].decode(), f[b"b"].decode(), int(f[b"r"]),
                                          f[b"e"].decode(), int(f[b"t"]) / 1000))
            if len(page) < _PAGE:
                return letters
            start = "(" + page[-1][0].decode()

    def redrive(self) -> int:
        total = 0
        while moved := int(self._run("REDRIVE", _PAGE)):
            total += moved
        return total

    def depth(self) -> QueueDepth:
        queued, in_flight, dead = self._run("DEPTH", _ms(HORIZON_S))
        return QueueDepth(queued=int(queued), in_flight=int(in_flight), dead=int(dead))

    def close(self) -> None:
        self._client.close()

    # -- internals ------------------------------------------------------------------------

    def _settle(self, script: str, lease: Lease, *args: object) -> bool:
        token = self._parse(lease)
        if token is None:
            return False  # a lease from another queue (or backend) is never held here
        return int(self._run(script, *token, *args)) == 1

    def _parse(self, lease: Lease) -> tuple[str, str] | None:
        """(entry id, delivery count) from a token of this queue's, else None."""
        eid, _, rest = lease.token.partition("/")
        count, _, tag = rest.partition("/")
        return (eid, count) if tag == self._tag and count.isdigit() else None

    def _run(self, script: str, *args: Any) -> Any:
        with self._translate():
            if not self._prepared:
                self._prepare()
            call = self._scripts[script]
            try:
                return call(keys=self.keys, args=[GROUP, CONSUMER, *args])
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._create_group()  # the stream was deleted (FLUSHDB, eviction): start over
                return call(keys=self.keys, args=[GROUP, CONSUMER, *args])

    def _prepare(self) -> None:
        self._create_group()
        if self.where not in _checked_servers:
            _checked_servers.add(self.where)
            try:
                policy = self._client.info("memory").get("maxmemory_policy", "noeviction")
            except redis.ResponseError:  # INFO not allowed to this user: nothing to check
                policy = "noeviction"
            if policy != "noeviction":
                log.warning("Redis at %s has maxmemory-policy %s: it may evict queued tasks; "
                            "set maxmemory-policy noeviction", self.where, policy)
        self._prepared = True

    def _create_group(self) -> None:
        try:
            self._client.xgroup_create(self.keys[0], GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise QueueUnavailable(
                f"redis queue {self.name!r} at {self.where}: {detail}") from exc


def _lease_s(visibility_timeout_s: float) -> float:
    if not 0 <= visibility_timeout_s <= HORIZON_S:
        raise ConfigError(f"visibility timeout {visibility_timeout_s} s is out of range "
                          f"(0 to {HORIZON_S:.0f} s)")
    return visibility_timeout_s


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
