"""The worker's books: which leased tasks are in flight, how many items each still owes.

The pipeline moves items in batches, but a task is settled (acked, retried or
handed back) as one: the ledger counts each task's items out as their outcomes
are written, remembers the first transient failure that touched it, and says
when a task is finished. It also bounds the items in flight, so memory stays
flat however long the queue, with two limits: items still without an outcome
hold their bytes or decoded input (big: ``capacity`` of them), items whose
outcome waits to be written hold a result (small: ``backlog`` more). Letting
outcomes pile up is what makes write batches, index statements and acks big
when writing is the slow stage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from gpufleet.domain import Task
from gpufleet.queue import Lease
from gpufleet.store import Location


@dataclass(eq=False)
class Run:
    """One leased task on its way through the pipeline."""

    lease: Lease
    task: Task
    input: Location
    output: Location
    keys: tuple[str, ...]  # the items still to process (already-recorded ones skipped)
    remaining: int = 0
    error: str | None = None  # a transient failure: the task is retried, not acked
    released: bool = False  # the lease is gone (lost, or handed back on drain): write nothing
    confirmed_at: float = field(default_factory=time.monotonic)  # the lease was last known held

    def __post_init__(self) -> None:
        self.remaining = len(self.keys)


def distinct(runs: Iterable[Run]) -> list[Run]:
    """The tasks a batch's items belong to, each once, in order."""
    return list(dict.fromkeys(runs))


@dataclass(frozen=True, slots=True)
class Settled:
    """A task whose items are all written: ack it, or retry it with its error."""

    run: Run
    error: str | None


class Ledger:
    def __init__(self, capacity: int, backlog: int = 0) -> None:
        self.capacity, self.backlog = capacity, backlog
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified whenever items leave
        self._runs: set[Run] = set()
        self._in_flight = 0  # received, not yet written
        self._unwritten = 0  # of those, with an outcome waiting to be written

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def wait_for_room(self, needed: int, stop: threading.Event) -> int:
        """Block until ``needed`` items fit (or stop is set); returns the room there is."""
        with self._room:
            while self._room_left() < needed and not stop.is_set():
                self._room.wait(0.5)
            return self._room_left()

    def _room_left(self) -> int:
        return min(self.capacity - (self._in_flight - self._unwritten),
                   self.capacity + self.backlog - self._in_flight)

    def wait_until_empty(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._room:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._room.wait(min(left, 0.5))
            return True

    def add(self, run: Run, *, counted: bool = True) -> None:
        """Hold a task (its lease is heartbeated); counted: its items are in flight now."""
        with self._lock:
            self._runs.add(run)
            if counted:
                self._in_flight += run.remaining

    def count_in(self, run: Run) -> None:
        """A held task's items enter the pipeline."""
        with self._lock:
            self._in_flight += run.remaining

    def live(self) -> list[Run]:
        """Tasks whose lease we still hold."""
        with self._lock:
            return [r for r in self._runs if not r.released]

    def release_all(self) -> list[Run]:
        """Mark every live task released (drain): their outcomes will not be written."""
        with self._lock:
            runs = [r for r in self._runs if not r.released]
            for r in runs:
                r.released = True
            return runs

    def outcomes_ready(self, count: int) -> None:
        """count items have their outcome (small) and no longer hold their input (big)."""
        with self._lock:
            self._unwritten += count
            self._room.notify_all()

    def count_out(self, outcomes: Iterable[tuple[Run, str | None]]) -> list[Settled]:
        """Count written items out (each counted by outcomes_ready first), each with its
        transient error or None; returns finished tasks."""
        finished: list[Settled] = []
        with self._lock:
            for run, transient in outcomes:
                self._in_flight -= 1
                self._unwritten -= 1
                run.remaining -= 1
                if transient and not run.error:
                    run.error = transient
                if run.remaining == 0:
                    self._runs.discard(run)
                    if not run.released:
                        finished.append(Settled(run, run.error))
            self._room.notify_all()
        return finished
