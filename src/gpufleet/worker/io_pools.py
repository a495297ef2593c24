"""The threads a worker reads and writes objects with: a pool per width, each store's own.

A store says how many of its requests are worth having in flight at once (its
``concurrency``): one for a directory, whose system calls take microseconds and
whose extra threads would only contend for the interpreter lock; several for S3,
whose requests are round trips. GPUFLEET_FETCH_CONCURRENCY, where set, is the
width for every store. Pools are made on first use, so a worker whose jobs are all
in directories never starts the threads S3 would need.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from gpufleet.store import Location


class IoPools:
    def __init__(self, name: str, width: int = 0) -> None:
        """name: the threads' prefix; width: every store's (0: each store's own)."""
        self.name, self.width = name, width
        self._pools: dict[int, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def width_for(self, location: Location) -> int:
        return self.width or max(1, int(getattr(location.store, "concurrency", 1)))

    def for_location(self, location: Location) -> ThreadPoolExecutor:
        return self._pool(self.width_for(location))

    def parallel_for(self, location: Location) -> ThreadPoolExecutor | None:
        """The pool for location; None where its store takes one request at a time (a
        directory): a caller that would only wait on a pool of one makes them itself."""
        width = self.width_for(location)
        return None if width == 1 else self._pool(width)

    def _pool(self, width: int) -> ThreadPoolExecutor:
        pool = self._pools.get(width)  # (asked for every task: no lock once it is made)
        if pool is None:
            with self._lock:
                pool = self._pools.get(width)
                if pool is None:
                    pool = self._pools[width] = ThreadPoolExecutor(width, f"{self.name}-{width}")
        return pool

    def shutdown(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.shutdown(wait=False, cancel_futures=True)
