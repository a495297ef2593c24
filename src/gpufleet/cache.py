"""A small cache for hot lookups (job status, item results), tenant-scoped by construction.

``GPUFLEET_CACHE=memory://`` (the default): an LRU in this process, thread-safe.
``redis://host:6379/1``: one cache shared by every API process. Values are
JSON documents; ``get`` returns None for a miss.

A cache is only ever asked with a ``CacheKey``, made by ``cache_key(tenant,
kind, id)``: the tenant is part of every key, and the parts are escaped
before they are joined, so no tenant's entry can answer another's lookup,
whatever the names contain.

Redis trouble never reaches the caller: the cache serves misses (and drops
writes) with one logged warning per outage, and tries Redis again after a
pause (half to all of ``retry_after_s``, at random, so that API processes
that lost Redis together do not all come back at once). An entry a delete
could not remove lives at most its TTL.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from gpufleet.errors import ConfigError
from gpufleet.jitter import equal_jitter

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class CacheKey:
    tenant: str
    kind: str  # what is cached: "job", "results", ...
    id: str

    def render(self, namespace: str) -> str:
        # quote() escapes ':' and '%', so the joined string names exactly one key.
        parts = (quote(p, safe="") for p in (self.tenant, self.kind, self.id))
        return f"{namespace}:cache:v1:" + ":".join(parts)


def cache_key(tenant: str, kind: str, id: str) -> CacheKey:
    if not tenant or not kind:
        raise ValueError("a cache key needs a tenant and a kind")
    return CacheKey(tenant, kind, id)


class Cache(Protocol):
    def get(self, key: CacheKey) -> Any | None:
        """The cached JSON value, or None: absent, expired, or the cache is unreachable."""
        ...

    def set(self, key: CacheKey, value: Any, *, ttl_s: float) -> None: ...

    def delete(self, key: CacheKey) -> None: ...

    def close(self) -> None: ...


def _encode(value: Any, ttl_s: float) -> bytes:
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be positive, not {ttl_s}")
    return json.dumps(value, separators=(",", ":")).encode()


class MemoryCache:
    """An LRU of at most max_entries, each expiring after its TTL."""

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ConfigError("a memory cache needs max_entries of at least 1")
        self.max_entries, self.clock = max_entries, clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> Any | None:
        name = key.render("memory")
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return None
            if entry[0] <= self.clock():
                del self._entries[name]
                return None
            self._entries.move_to_end(name)
        return json.loads(entry[1])

    def set(self, key: CacheKey, value: Any, *, ttl_s: float) -> None:
        data = _encode(value, ttl_s)
        name = key.render("memory")
        with self._lock:
            self._entries[name] = (self.clock() + ttl_s, data)
            self._entries.move_to_end(name)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def delete(self, key: CacheKey) -> None:
        with self._lock:
            self._entries.pop(key.render("memory"), None)

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()


class RedisCache:
    """Entries in Redis under ``<namespace>:cache:v1:...``, expiring with PX."""

    def __init__(self, url: str, *, namespace: str = "gpufleet", retry_after_s: float = 5.0,
                 timeout_s: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigError("a redis:// cache needs redis: pip install 'gpufleet[redis]'"
                              ) from None
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.namespace, self.retry_after_s, self.clock = namespace, retry_after_s, clock
        self.where = _without_password(url)
        try:
            # No retries inside a call: a cache that is down must answer at once.
            self.client = redis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        except ValueError as exc:
            raise ConfigError(f"invalid cache URL {self.where}: {exc}") from None
        self._lock = threading.Lock()
        self._down_until: float | None = None  # None: Redis answered last time

    def get(self, key: CacheKey) -> Any | None:
        data = self._call(lambda: self.client.get(key.render(self.namespace)))
        return None if data is None else json.loads(data)

    def set(self, key: CacheKey, value: Any, *, ttl_s: float) -> None:
        data = _encode(value, ttl_s)
        ttl_ms = max(1, round(ttl_s * 1000))
        self._call(lambda: self.client.set(key.render(self.namespace), data, px=ttl_ms))

    def delete(self, key: CacheKey) -> None:
        self._call(lambda: self.client.delete(key.render(self.namespace)))

    def ping(self) -> bool:
        """True if Redis answers now (for `gpufleet init` and health checks)."""
        with self._lock:
            self._down_until = None if self._down_until is None else 0.0
        return bool(self._call(self.client.ping))

    def close(self) -> None:
        self.client.close()

    def _call(self, action: Callable[[], T]) -> T | None:
        with self._lock:
            if self._down_until is not None and self.clock() < self._down_until:
                return None
        try:
            result = action()
        except self._errors as exc:
            with self._lock:
                first = self._down_until is None
                self._down_until = self.clock() + equal_jitter(self.retry_after_s)
            if first:
                log.warning("cache %s unavailable, serving misses: %s", self.where, exc)
            return None
        with self._lock:
            if self._down_until is not None:
                self._down_until = None
                log.warning("cache %s is back", self.where)
        return result


def open_cache(url: str, *, clock: Callable[[], float] = time.monotonic) -> Cache:
    """``memory://`` (``?max_entries=N``) or ``redis://host:port/db`` (``?namespace=NAME``)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "memory":
        try:
            max_entries = int(query.get("max_entries", DEFAULT_MAX_ENTRIES))
        except ValueError:
            raise ConfigError(f"cache URL {url!r}: max_entries must be an integer") from None
        return MemoryCache(max_entries=max_entries, clock=clock)
    if parts.scheme in ("redis", "rediss"):
        namespace = query.pop("namespace", "gpufleet")
        rest = urlunsplit(parts._replace(query=urlencode(query)))
        return RedisCache(rest, namespace=namespace, clock=clock)
    raise ConfigError(f"unsupported cache URL {_without_password(url)!r} (GPUFLEET_CACHE): "
                      "expected memory:// or redis://host:6379/1")


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))
