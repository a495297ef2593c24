"""The heartbeat thread: keeps the leases of tasks in flight, and says the worker is alive.

Leases are extended at a third of their length, so two missed beats are survivable;
the worker registry hears from us more often (``beat``), so a fleet view stays fresh.
A lease found gone marks its task released: nothing more of it is written, and it is
another worker's now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gpufleet.queue import TaskQueue
from gpufleet.worker.ledger import Ledger, Run
from gpufleet.worker.observer import Observer, TaskEnd
from gpufleet.worker.settling import Settler, safely

log = logging.getLogger(__name__)
_BEAT_S = 5.0  # the worker registry hears from us at least this often


class Heartbeat:
    def __init__(self, *, queue: TaskQueue, ledger: Ledger, settler: Settler, lease_s: float,
                 beat: Callable[[], object], observer: Observer) -> None:
        self.queue, self.ledger, self.settler, self.lease_s = queue, ledger, settler, lease_s
        self.beat, self.observer = beat, observer
        self.stop = threading.Event()

    def run(self) -> None:
        extend_every_s = self.lease_s / 3
        last_extend = time.monotonic()
        while not self.stop.wait(min(_BEAT_S, extend_every_s)):
            safely(self.beat)
            self.settler.settle_owed()
            if time.monotonic() - last_extend < extend_every_s * 0.99:
                continue
            last_extend = time.monotonic()
            for run in self.ledger.live():
                self._extend(run)

    def _extend(self, run: Run) -> None:
        asked_at = time.monotonic()
        kept = safely(self.queue.extend, run.lease, visibility_timeout_s=self.lease_s)
        if kept:
            run.confirmed_at = asked_at
            self.observer.lease_extended(True)
        elif kept is False:
            log.warning("lost the lease on a task of job %s", run.task.job)
            run.released = True
            self.observer.lease_extended(False)
            self.observer.task_ended(run, TaskEnd.LOST)
