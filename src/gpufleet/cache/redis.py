"""A cache shared by every API process, in Redis; an outage serves misses, never errors."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gpufleet.cache.base import CacheKey, encode_value
from gpufleet.errors import ConfigError
from gpufleet.jitter import equal_jitter
from gpufleet.redact import redact_url

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        self.where = redact_url(url)
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
        data = encode_value(value, ttl_s)
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

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.monotonic) -> RedisCache:
        """``redis://host:port/db`` with ``?namespace=NAME`` (default gpufleet)."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        namespace = query.pop("namespace", "gpufleet")
        rest = urlunsplit(parts._replace(query=urlencode(query)))
        return cls(rest, namespace=namespace, clock=clock)
