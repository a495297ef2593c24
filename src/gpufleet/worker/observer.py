"""What the pipeline tells whoever watches it: metrics, traces, or nobody.

The pipeline calls one ``Observer`` at each step of a task's way through it, with
lists (a piece, a batch, a write), never per item, so watching costs nothing per
item. ``Observer`` itself ignores everything: metrics and tracing override what
they need. ``Observers`` fans out to several, and an observer that raises is
logged and ignored: watching must never stop the work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

from gpufleet.domain import WorkerState

if TYPE_CHECKING:
    from gpufleet.worker.ledger import Run
    from gpufleet.worker.writer import Outcome

log = logging.getLogger(__name__)


class Stage(StrEnum):
    FETCH = "fetch"
    DECODE = "decode"
    INFER = "infer"
    WRITE = "write"


class TaskEnd(StrEnum):
    ACKED = "acked"  # every item has its result
    RETRIED = "retried"  # a transient failure: the task goes back on the queue
    RELEASED = "released"  # handed back unfinished on drain
    LOST = "lost"  # its lease expired under us: another worker has it now


class Observer:
    """Every hook does nothing; override the ones you need."""

    def task_started(self, run: Run) -> None:
        """A leased task enters the pipeline (its items are in flight from now)."""

    def stage(self, stage: Stage, runs: Sequence[Run], items: int, started: float,
              seconds: float) -> None:
        """One stage ran over ``items`` items of ``runs``: wall-clock start, duration."""

    def batch(self, size: int, capacity: int) -> None:
        """The model ran one batch of ``size`` inputs, out of ``capacity`` it can take."""

    def written(self, outcomes: Sequence[Outcome]) -> None:
        """These outcomes were written (results) or set aside (transient failures)."""

    def task_ended(self, run: Run, end: TaskEnd) -> None:
        """A task left the pipeline."""

    def lease_extended(self, kept: bool) -> None:
        """A heartbeat extended a lease (kept) or found it gone."""

    def state(self, state: WorkerState) -> None:
        """The worker's state, reported at each change and with each heartbeat."""


class Observers(Observer):
    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self.observers = list(observers)

    def _each(self, hook: str, *args: object) -> None:
        for observer in self.observers:
            try:
                getattr(observer, hook)(*args)
            except Exception:  # watching must never stop the work
                log.exception("observer %s failed in %s", type(observer).__name__, hook)

    def task_started(self, run: Run) -> None:
        self._each("task_started", run)

    def stage(self, stage: Stage, runs: Sequence[Run], items: int, started: float,
              seconds: float) -> None:
        self._each("stage", stage, runs, items, started, seconds)

    def batch(self, size: int, capacity: int) -> None:
        self._each("batch", size, capacity)

    def written(self, outcomes: Sequence[Outcome]) -> None:
        self._each("written", outcomes)

    def task_ended(self, run: Run, end: TaskEnd) -> None:
        self._each("task_ended", run, end)

    def lease_extended(self, kept: bool) -> None:
        self._each("lease_extended", kept)

    def state(self, state: WorkerState) -> None:
        self._each("state", state)
