"""Workers writing to an SQLite index in turn, each starting as soon as the last commits.

SQLite lets one transaction write at a time, and a writer that finds the lock taken
sleeps in its busy handler between tries: 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50,
then 100 ms, however soon the lock is free. Two workers recording their results in
one index slept through most of each other's commits that way: with the two on 2
cores, a fifth of the CPU sat idle while items waited (vmstat), and strace counted
hundreds of those sleeps a worker.

A worker's writes (its results, its own row) take this gate first: a lock (flock) on a
file beside the database, tried every fraction of a millisecond, so the next writer
starts within that of the last one's commit. The kernel drops the lock of a process
that dies, however it dies; a holder that stops without dying (SIGSTOP, a stalled
machine) makes the others give up after the same time SQLite's own wait would. Other
writers (submit, the API, the controller) are rare, and keep SQLite's wait.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from gpufleet.errors import IndexUnavailable

_FIRST_TRY_S = 0.0002  # the wait after the first refusal, doubled on each
_LONGEST_TRY_S = 0.002  # up to this: a commit is seldom noticed later than this after


class WriteGate:
    def __init__(self, database: str, *, timeout_s: float) -> None:
        self.path = f"{database}-writer"  # beside SQLite's own -wal and -shm
        self.timeout_s = timeout_s
        # A flock belongs to an open file, which the threads of a process share: they take
        # turns here first.
        self._threads = threading.Lock()
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        deadline = time.monotonic() + self.timeout_s
        if not self._threads.acquire(timeout=self.timeout_s):
            raise IndexUnavailable(f"index: no turn to write within {self.timeout_s:.0f} s")
        try:
            fd = self._open()
            self._lock(fd, deadline)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _lock(self, fd: int, deadline: float) -> None:
        """The file's lock, tried again and again (never a blocking flock: a holder that
        stopped without dying would keep it for ever) until the deadline."""
        wait = _FIRST_TRY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexUnavailable(f"index: another process has held {self.path} "
                                           f"for over {self.timeout_s:.0f} s") from None
            time.sleep(wait)
            wait = min(_LONGEST_TRY_S, 2 * wait)

    def close(self) -> None:
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise IndexUnavailable(f"index: cannot open {self.path}: {exc.strerror}"
                                       ) from exc
        return self._fd


def write_gate(database: str | None, *, timeout_s: float) -> WriteGate | None:
    """The gate of an SQLite database file; None for one in memory (one process alone) or
    named by a URI (``file:...``), which keeps SQLite's own wait."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return WriteGate(database, timeout_s=timeout_s)
