"""A small cache for hot lookups (job status, item results), tenant-scoped by construction."""

from gpufleet.cache.base import Cache, CacheKey, cache_key, open_cache
from gpufleet.cache.memory import MemoryCache
from gpufleet.cache.redis import RedisCache

__all__ = ["Cache", "CacheKey", "MemoryCache", "RedisCache", "cache_key", "open_cache"]
