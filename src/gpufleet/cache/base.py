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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from gpufleet.redact import redact_url
from gpufleet.registry import Registry

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


def encode_value(value: Any, ttl_s: float) -> bytes:
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be positive, not {ttl_s}")
    return json.dumps(value, separators=(",", ":")).encode()


CACHES = Registry("cache URL (GPUFLEET_CACHE)", {
    "memory": "gpufleet.cache.memory:MemoryCache.from_url",
    "redis": "gpufleet.cache.redis:RedisCache.from_url",
    "rediss": "gpufleet.cache.redis:RedisCache.from_url",
}, expected="memory:// or redis://host:6379/1")


def open_cache(url: str, *, clock: Callable[[], float] = time.monotonic) -> Cache:
    """``memory://`` (``?max_entries=N``) or ``redis://host:port/db`` (``?namespace=NAME``)."""
    opener = CACHES.load(urlsplit(url).scheme, shown=redact_url(url))
    cache: Cache = opener(url, clock=clock)
    return cache
