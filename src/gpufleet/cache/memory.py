"""The in-process cache: an LRU with TTLs, thread-safe (the default, ``memory://``)."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gpufleet.cache.base import DEFAULT_MAX_ENTRIES, CacheKey, encode_value
from gpufleet.errors import ConfigError


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
        data = encode_value(value, ttl_s)
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

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.monotonic) -> MemoryCache:
        """``memory://`` with ``?max_entries=N``."""
        query = dict(parse_qsl(urlsplit(url).query))
        try:
            max_entries = int(query.get("max_entries", DEFAULT_MAX_ENTRIES))
        except ValueError:
            raise ConfigError(f"cache URL {url!r}: max_entries must be an integer") from None
        return cls(max_entries=max_entries, clock=clock)
