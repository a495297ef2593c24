"""The pipeline's last stage, in two threads: one writes result objects, the other records
their rows in the index and acks finished tasks.

Both halves wait on something outside the process (the store, the database), and
one thread doing them in turn left each idle while the other ran: with a model that
costs nothing, that thread was the pipeline's bottleneck (half its time in SQLite,
half waiting for objects; py-spy on ``benchmarks/overhead.py``). Two threads
overlap them: a batch's objects are written while the batch before it is recorded.
The order within a batch stays: objects first, then rows, then the ack, so a row
the index shows always has its object, and an acked task has both.
"""

from __future__ import annotations

import queue as stdlib_queue
import threading
import time
from typing import Any, Protocol

from gpufleet.queue import TaskQueue
from gpufleet.queue.batch import ack_many
from gpufleet.worker.ledger import Ledger, distinct
from gpufleet.worker.observer import Observer, Stage, TaskEnd
from gpufleet.worker.settling import Settler, safely
from gpufleet.worker.writer import Outcome, ResultWriter

STOP = object()  # put once by each producer that ends
WRITE_BATCH = 1024  # outcomes whose objects are written together, at most


class Counts(Protocol):
    items: int


class WriteStage:
    def __init__(self, *, writer: ResultWriter, ledger: Ledger, settler: Settler,
                 queue: TaskQueue, observer: Observer, stats: Counts, producers: int) -> None:
        self.writer, self.ledger, self.settler, self.queue = writer, ledger, settler, queue
        self.observer, self.stats, self.producers = observer, stats, producers
        self.inbox: stdlib_queue.Queue[Any] = stdlib_queue.Queue()  # lists of outcomes, STOPs
        self._written: stdlib_queue.Queue[Any] = stdlib_queue.Queue()  # to be recorded

    def threads(self) -> list[threading.Thread]:
        return [threading.Thread(target=self._write_loop, name="write", daemon=True),
                threading.Thread(target=self._record_loop, name="record", daemon=True)]

    def _write_loop(self) -> None:
        stops = 0
        while stops < self.producers:
            first = self.inbox.get()
            if first is STOP:
                stops += 1
                continue
            outcomes = list(first)
            while len(outcomes) < WRITE_BATCH:  # write what has piled up, together
                try:
                    more = self.inbox.get_nowait()
                except stdlib_queue.Empty:
                    break
                if more is STOP:
                    stops += 1
                    continue
                outcomes.extend(more)
            began, t0 = time.time(), time.perf_counter()
            # (a shard-mode task's outcomes wait there for the rest of it)
            self._written.put((self.writer.put(outcomes), began, t0))
        self._written.put(STOP)

    def _record_loop(self) -> None:
        while True:
            batches = [self._written.get()]
            while batches[-1] is not STOP:  # record what has piled up, together
                try:
                    batches.append(self._written.get_nowait())
                except stdlib_queue.Empty:
                    break
            stopping = batches[-1] is STOP
            if stopping:
                batches.pop()
            if batches:
                self._record([o for outcomes, _, _ in batches for o in outcomes],
                             began=batches[0][1], t0=batches[0][2])
            if stopping:
                return

    def _record(self, outcomes: list[Outcome], *, began: float, t0: float) -> None:
        self.writer.record(outcomes)
        self.observer.stage(Stage.WRITE, distinct(o.run for o in outcomes), len(outcomes), began,
                            time.perf_counter() - t0)
        self.observer.written(outcomes)
        finished = self.ledger.count_out((o.run, o.transient) for o in outcomes)
        self.stats.items += sum(1 for o in outcomes if o.transient is None)
        acks = [s.run.lease for s in finished if s.error is None]
        for s in finished:
            if s.error is not None:
                safely(self.settler.retry, s.run, s.error)
            self.observer.task_ended(s.run, TaskEnd.ACKED if s.error is None else TaskEnd.RETRIED)
        if acks:  # tasks finished together are acked together: one request where it can be
            safely(ack_many, self.queue, acks)
