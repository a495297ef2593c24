"""Read-through caching of API answers (job views, item results) as JSON text.

Keys are made by ``gpufleet.cache.cache_key(tenant, kind, id)``, so the tenant
is part of every key. The cache itself turns Redis trouble into misses, so
with Redis down the API answers from the index. An in-process cache is
called from the event loop directly; Redis from a worker thread, so a slow
Redis never stalls other requests.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from gpufleet.cache import Cache, MemoryCache, cache_key


class ReadThrough:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.inline = isinstance(cache, MemoryCache)

    def get(self, tenant: str, kind: str, id: str) -> bytes | None:
        value = self.cache.get(cache_key(tenant, kind, id))
        return value.encode() if isinstance(value, str) else None

    async def aget(self, tenant: str, kind: str, id: str) -> bytes | None:
        if self.inline:
            return self.get(tenant, kind, id)
        return await run_in_threadpool(self.get, tenant, kind, id)

    def set(self, tenant: str, kind: str, id: str, body: bytes, *, ttl_s: float) -> None:
        if ttl_s > 0:
            self.cache.set(cache_key(tenant, kind, id), body.decode(), ttl_s=ttl_s)

    def delete(self, tenant: str, kind: str, id: str) -> None:
        self.cache.delete(cache_key(tenant, kind, id))

    def close(self) -> None:
        self.cache.close()
