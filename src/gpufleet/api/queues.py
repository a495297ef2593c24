"""The API's open queues: one handle per model, reused, and at most ``size`` kept open.

Each distinct model spec is a queue, and a queue handle holds files or sockets
(a SQLite connection is three open files). Handles are kept in least-recently
used order; past ``size`` the oldest is closed, or, while a request still uses
it, closed by the last one to let go. So however many specs the index names,
the API holds a bounded number of handles, and no request finds its handle
closed under it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from gpufleet.errors import GpufleetError
from gpufleet.queue import TaskQueue


@dataclass(eq=False)
class _Handle:
    queue: TaskQueue
    users: int = 0
    evicted: bool = False


class QueueHandles:
    def __init__(self, open_queue: Callable[[str], TaskQueue], *, size: int) -> None:
        self._open, self._size = open_queue, size
        self._handles: OrderedDict[str, _Handle] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def use(self, model: str) -> Iterator[TaskQueue]:
        """The queue of model, open for the duration of the block."""
        handle = self._acquire(model)
        try:
            yield handle.queue
        finally:
            with self._lock:
                handle.users -= 1
                done = handle.evicted and handle.users == 0
            if done:
                _close(handle.queue)

    def open_count(self) -> int:
        """Handles kept open now (evicted ones still in use are closed once let go)."""
        with self._lock:
            return len(self._handles)

    def close(self) -> None:
        with self._lock:
            idle = [h.queue for h in self._handles.values() if h.users == 0]
            for handle in self._handles.values():
                handle.evicted = True  # one in use is closed by its last user
            self._handles.clear()
        for queue in idle:
            _close(queue)

    def _acquire(self, model: str) -> _Handle:
        with self._lock:
            handle = self._handles.get(model)
            if handle is not None:
                self._handles.move_to_end(model)
                handle.users += 1
                return handle
        # Opened outside the lock: on SQS or Redis it is a network call, and other
        # requests' queues should not wait for it.
        queue = self._open(model)
        with self._lock:
            handle = self._handles.get(model)
            spare = queue if handle is not None else None
            if handle is None:
                handle = self._handles[model] = _Handle(queue)
            self._handles.move_to_end(model)
            handle.users += 1
            evicted = []
            while len(self._handles) > self._size:
                _, old = self._handles.popitem(last=False)
                old.evicted = True
                if old.users == 0:
                    evicted.append(old.queue)
        for q in ([spare] if spare is not None else []) + evicted:
            _close(q)
        return handle


def _close(queue: TaskQueue) -> None:
    with suppress(GpufleetError, OSError):  # a handle that fails to close is gone anyway
        queue.close()
