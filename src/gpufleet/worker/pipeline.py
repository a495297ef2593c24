"""receive ▶ fetch ▶ decode ▶ batch ▶ infer ▶ write, moving lists, never single items.

Threads: the caller receives tasks and judges each delivery (delivery.py); a pool as
wide as the input's store is worth (io_pools.py) fetches a task's objects a piece at a
time; a pool sized to the cores decodes whole pieces (through the job's preprocessing
chain, if any: inputs.py); ``tagger.streams`` threads batch decoded items across tasks
and run the model (two on a GPU, so copies and decode overlap compute); one thread
writes result objects while another records the batch before in the index and acks
finished tasks together (write_stage.py, writer.py); one heartbeats leases and retries
what an outage interrupted. Each step is told to an observer: metrics, traces. No
future, lock or round trip per item: per piece, batch or task; a bounded number of
items in flight (ledger.py).
"""
from __future__ import annotations

import logging
import os
import queue as stdlib_queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gpufleet.config import Settings
from gpufleet.domain import ItemResult, ItemStatus, Tag, Task, WorkerState
from gpufleet.errors import DeviceLost, GpufleetError, ItemError, ItemSkipped, Unavailable
from gpufleet.index import Index
from gpufleet.jitter import equal_jitter
from gpufleet.models import Tagger
from gpufleet.queue import Lease, TaskQueue
from gpufleet.store import Location, open_location
from gpufleet.worker.cancels import CancelledJobs
from gpufleet.worker.delivery import Verdict, give_up_reason, judge
from gpufleet.worker.heartbeat import Heartbeat
from gpufleet.worker.inputs import ModelInputs
from gpufleet.worker.io_pools import IoPools
from gpufleet.worker.ledger import Ledger, Run, distinct
from gpufleet.worker.observer import Observer, Stage, TaskEnd
from gpufleet.worker.settling import Settler, safely
from gpufleet.worker.write_stage import STOP, WRITE_BATCH, WriteStage
from gpufleet.worker.writer import Outcome, ResultWriter

log = logging.getLogger(__name__)
_PIECE = 8  # items fetched, then decoded, by one future
_BATCH_WAIT_S = 0.02  # how long a partial batch waits for company before it runs
_RECEIVE_WAIT_S = 1.0  # long poll (SQS, Redis) when the queue is empty; bounds SIGTERM's delay
_OUTAGE_MAX_S = 5.0  # while the queue or index is unreachable, retries back off up to this
_IDLE_CALL_S = 60.0  # an idle worker looks for stranded jobs (the sweeper) this often
_Ready = tuple[Run, str, Any, float]  # a decoded item: its task, key, model input, start time


@dataclass
class PipelineStats:
    items: int = 0
    tasks: int = 0
    started_at: float = field(default_factory=time.time)


class Pipeline:
    def __init__(self, *, tagger: Tagger, queue: TaskQueue, index: Index, settings: Settings,
                 worker_id: str, on_state: Callable[[WorkerState], None] = lambda s: None,
                 drain_grace_s: Callable[[], float] | None = None,
                 on_idle: Callable[[], object] = lambda: None,
                 observer: Observer | None = None) -> None:
        self.tagger, self.queue, self.index, self.settings = tagger, queue, index, settings
        self.inputs = ModelInputs(tagger, settings)  # bytes, or a job's preprocessing chain
        self.observer = observer or Observer()
        self.worker_id, self.on_state = worker_id, on_state
        self.on_idle = on_idle  # called while the queue is empty, at most every _IDLE_CALL_S
        # At drain time: a spot notice may leave less than GPUFLEET_DRAIN_GRACE_S.
        self.drain_grace_s = drain_grace_s or (lambda: settings.worker.drain_grace_s)
        self.state = WorkerState.READY
        self.settler = Settler(queue=queue, index=index, settings=settings)
        self.streams = max(1, int(getattr(tagger, "streams", 1)))
        # Inputs in flight: enough to keep every stage busy; outcomes: a write batch being
        # written and one being recorded (write_stage.py).
        self.ledger = Ledger(max(3 * settings.tasks.chunk_size,
                                 (2 + self.streams) * tagger.batch_size), backlog=2 * WRITE_BATCH)
        self.stats = PipelineStats()
        self._ready: stdlib_queue.Queue[Any] = stdlib_queue.Queue()
        self._locations: dict[str, Location] = {}
        self._cancelled = CancelledJobs(index)
        self._outage_s = 0.0  # the current wait between receives while a service is down
        self._index_down = threading.Event()  # set by a failed write; receiving pauses
        # Why the model's device can run nothing more (the tagger raised DeviceLost): the
        # pipeline then receives nothing, hands every task back and ends.
        self.lost: str | None = None
        self._alone: deque[Run] = deque()  # redelivered single items, run one at a time
        self._running_alone: Run | None = None
        cores = settings.worker.decode_threads or os.cpu_count() or 1
        self._fetch_pools = IoPools("fetch", settings.worker.fetch_concurrency)
        self._decode_pool = ThreadPoolExecutor(cores, "decode")
        self._put_pools = IoPools("put", settings.worker.fetch_concurrency)
        self.writer = ResultWriter(index=index, queue=queue, model=tagger.name,
                                   pools=self._put_pools, observer=self.observer,
                                   lease_s=settings.tasks.visibility_timeout_s,
                                   on_index_down=lambda error: self._index_down.set())
        self.write_stage = WriteStage(writer=self.writer, ledger=self.ledger,
                                      settler=self.settler, queue=queue, observer=self.observer,
                                      stats=self.stats, producers=self.streams)
        self._written = self.write_stage.inbox  # outcomes, from every stage

    # The receiving loop ------------------------------------------------------

    def run(self, *, stop: threading.Event, max_idle_s: float | None = None) -> PipelineStats:
        threads = [threading.Thread(target=self._infer_loop, name=f"infer-{i}", daemon=True)
                   for i in range(self.streams)]
        heartbeat = Heartbeat(queue=self.queue, ledger=self.ledger, settler=self.settler,
                              lease_s=self.settings.tasks.visibility_timeout_s,
                              beat=lambda: self._set_state(self.state), observer=self.observer)
        threads += [*self.write_stage.threads(),
                    threading.Thread(target=heartbeat.run, name="heartbeat", daemon=True)]
        for t in threads:
            t.start()
        idle_since = self._idle_called = time.monotonic()
        poll_s = 0.05
        self._set_state(WorkerState.READY)
        while not stop.is_set() and self.lost is None:
            if self._index_down.is_set():
                self._wait_for_index(stop)
                continue
            if self._alone or self._running_alone is not None:
                self._run_alone(stop)
                continue
            room = self.ledger.wait_for_room(self.settings.tasks.chunk_size, stop)
            if stop.is_set() or self.lost is not None:
                break
            busy = self.ledger.in_flight > 0
            asked_at = time.monotonic()  # a lease received is ours at least until then + its length
            leases = self._receive(room, stop)
            if leases:
                poll_s = 0.05
                self._set_state(WorkerState.BUSY)
                for lease in leases:
                    self._start(lease, asked_at)
                continue
            if busy:
                idle_since = time.monotonic()
            elif max_idle_s is not None and time.monotonic() - idle_since >= max_idle_s:
                log.info("idle for %.0f s: stopping", max_idle_s)
                break
            else:
                self._set_state(WorkerState.READY)
                if time.monotonic() - self._idle_called >= _IDLE_CALL_S:
                    self._idle_called = time.monotonic()
                    safely(self.on_idle)
            stop.wait(poll_s)  # the queue is empty: back off, up to half a second
            poll_s = min(0.5, poll_s * 2)
        self._drain()
        heartbeat.stop.set()
        for _ in range(self.streams):
            self._ready.put(STOP)
        for t in threads:
            t.join(timeout=1)
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
        for pools in (self._fetch_pools, self._put_pools):
            pools.shutdown()
        return self.stats

    def _set_state(self, state: WorkerState) -> None:
        self.state = state
        self.observer.state(state)
        self.on_state(state)

    def _receive(self, room: int, stop: threading.Event) -> list[Lease]:
        try:
            leases = self.queue.receive(max(1, room // self.settings.tasks.chunk_size),
                                        visibility_timeout_s=self.settings.tasks.visibility_timeout_s,
                                        wait_s=_RECEIVE_WAIT_S)
        except Unavailable as exc:  # wait it out, backing off; in-flight work carries on
            self._back_off(stop, "cannot receive tasks", exc)
            return []
        self._outage_s = 0.0
        return leases

    def _back_off(self, stop: threading.Event, what: str, exc: Exception) -> None:
        self._outage_s = min(_OUTAGE_MAX_S, max(0.5, 2 * self._outage_s))
        log.warning("%s, retrying in %.1f s: %s", what, self._outage_s, exc)
        stop.wait(equal_jitter(self._outage_s))  # workers that failed together spread out

    def _wait_for_index(self, stop: threading.Event) -> None:
        """Receive nothing while results cannot be recorded: tasks would only burn receives."""
        self._set_state(WorkerState.BUSY if self.ledger.in_flight else WorkerState.READY)
        try:
            self.index.is_cancelled("")
        except GpufleetError as exc:
            self._back_off(stop, "the index is unreachable: not receiving tasks", exc)
            return
        log.info("the index is back: receiving again")
        self._outage_s = 0.0
        self._index_down.clear()

    def _drain(self) -> None:
        """Finish what fits in the grace period, then hand the rest back at once."""
        self._set_state(WorkerState.DRAINING)
        finished = self.ledger.wait_until_empty(self.drain_grace_s())
        runs = self.ledger.release_all()  # unfinished, or waiting to run alone
        for r in runs:
            safely(self.queue.release, r.lease, delay_s=0.0)
            self.observer.task_ended(r, TaskEnd.RELEASED)
        if runs and finished:
            log.info("released %d task(s) waiting to run alone", len(runs))
        elif runs:
            log.warning("grace period over: released %d unfinished task(s)", len(runs))

    # Deliveries --------------------------------------------------------------

    def _start(self, lease: Lease, asked_at: float) -> None:
        try:
            task = Task.decode(lease.body)
            # Results go to <output>/<job>/<item key>.json: rewriting one is harmless.
            input_location = self._location(task.input)
            output = self._location(task.output).child(task.job)
        except (ValueError, KeyError, TypeError, GpufleetError) as exc:
            # A message no worker can read will never succeed: dead-letter it now.
            safely(self.queue.dead_letter, lease, error=f"bad task: {exc}")
            return
        if task.job in self._cancelled:  # dropped unprocessed; tasks already running finish
            log.info("dropping a task of cancelled job %s", task.job)
            safely(self.queue.ack, lease)
            return
        verdict = judge(task, lease, max_receives=self.settings.tasks.max_receives)
        if verdict is Verdict.GIVE_UP:
            self.settler.give_up(task, lease, give_up_reason(task, lease))
            return
        if verdict is Verdict.SPLIT:
            self.settler.split(task, lease)
            return
        keys = task.keys if verdict is Verdict.RUN else self.settler.unrecorded(task, lease)
        if not keys:
            return  # every item was recorded by an earlier delivery: acked, nothing to redo
        if verdict is Verdict.ALONE and (self._alone or self._running_alone is not None):
            self.settler.requeue(task, lease)  # one at a time: the others wait on the queue
            return  # it never entered: no task_started without its task_ended
        run = Run(lease, task, input_location, output, keys=keys, confirmed_at=asked_at)
        self.stats.tasks += 1
        self.observer.task_started(run)
        if verdict is Verdict.ALONE:
            self.ledger.add(run, counted=False)  # heartbeats keep it while it waits its turn
            self._alone.append(run)
            return
        self.ledger.add(run)
        self._launch(run)

    def _launch(self, run: Run) -> None:
        keys, pool = run.keys, self._fetch_pools.for_location(run.input)
        for start in range(0, len(keys), _PIECE):
            pool.submit(self._fetch, run, keys[start:start + _PIECE])

    def _run_alone(self, stop: threading.Event) -> None:
        """Run redelivered single items one at a time, with nothing else in the worker."""
        if not self.ledger.wait_until_empty(0.5) or stop.is_set():
            return
        self._running_alone = None
        while self._alone:
            run = self._alone.popleft()
            if not run.released:
                self.ledger.count_in(run)
                self._running_alone = run
                self._launch(run)
                return

    def _location(self, uri: str) -> Location:
        if uri not in self._locations:
            self._locations[uri] = open_location(uri, settings=self.settings)
        return self._locations[uri]

    # Stages ----------------------------------------------------------------

    def _fetch(self, run: Run, keys: tuple[str, ...]) -> None:
        started, t0 = time.time(), time.perf_counter()
        fetched: list[tuple[str, bytes]] = []
        failed: list[Outcome] = []
        found = run.input.get_many(keys, max_bytes=self.settings.worker.max_object_bytes)
        for key, data in zip(keys, found, strict=True):
            if isinstance(data, bytes):
                fetched.append((key, data))
            elif isinstance(data, ItemError):
                failed.append(self._failed(run, key, str(data), started))
            else:  # store trouble: retry the whole task later
                failed.append(Outcome(run, key, None, transient=f"fetch {key}: {data}"))
        self.observer.stage(Stage.FETCH, (run,), len(keys), started, time.perf_counter() - t0)
        if failed:
            self._emit(failed)
        if fetched:
            self._decode_pool.submit(self._decode, run, fetched, started)

    def _decode(self, run: Run, fetched: list[tuple[str, bytes]], started: float) -> None:
        began, t0 = time.time(), time.perf_counter()
        ready: list[_Ready] = []
        failed: list[Outcome] = []
        for key, data in fetched:
            try:
                ready.append((run, key, self.inputs.make(run.task, data), started))
            except ItemError as exc:  # or ItemSkipped: a preprocessing filter left it out
                failed.append(self._failed(run, key, exc, started))
            except Exception as exc:  # an input must never kill the worker
                log.exception("unexpected error decoding %s", key)
                failed.append(self._failed(run, key, f"cannot decode: {exc!r}", started))
        self.observer.stage(Stage.DECODE, (run,), len(fetched), began, time.perf_counter() - t0)
        if failed:
            self._emit(failed)
        if ready:
            self._ready.put(ready)

    def _emit(self, outcomes: list[Outcome]) -> None:
        self.ledger.outcomes_ready(len(outcomes))  # their inputs are let go: room for more
        self._written.put(outcomes)

    def _failed(self, run: Run, key: str, error: str | ItemError, started: float) -> Outcome:
        return Outcome(run, key, ItemResult(
            job=run.task.job, key=key, error=str(error),
            status=ItemStatus.SKIPPED if isinstance(error, ItemSkipped) else ItemStatus.FAILED,
            worker=self.worker_id, started_at=started, finished_at=time.time()))

    def _infer_loop(self) -> None:
        batch: list[_Ready] = []
        deadline = 0.0
        size = self.tagger.batch_size
        while True:
            timeout = max(0.0, deadline - time.monotonic()) if batch else None
            try:
                entries = self._ready.get(timeout=timeout)
            except stdlib_queue.Empty:
                entries = None
            if entries is STOP:
                self._infer(batch)
                self._written.put(STOP)
                return
            if entries:
                if not batch:
                    deadline = time.monotonic() + _BATCH_WAIT_S
                batch.extend(entries)
            while len(batch) >= size:
                self._infer(batch[:size])
                batch = batch[size:]
                deadline = time.monotonic() + _BATCH_WAIT_S
            if batch and entries is None:
                self._infer(batch)
                batch = []

    def _infer(self, batch: list[_Ready]) -> None:
        if not batch:
            return
        if self.lost is not None:  # nothing more runs there: back to the queue, untried
            self._retry_later(batch, f"inference: {self.lost}")
            return
        began, t0 = time.time(), time.perf_counter()
        try:
            all_tags = self.tagger.infer([payload for _, _, payload, _ in batch])
            if len(all_tags) != len(batch):
                raise RuntimeError(f"model returned {len(all_tags)} results for {len(batch)}")
        except DeviceLost as exc:
            # Every later batch would fail the same way, each costing its tasks a delivery:
            # a worker that kept receiving would send the job to the dead-letter queue.
            if self.lost is None:
                log.error("handing every task back and stopping: %s", exc)
            self.lost = str(exc)
            self._retry_later(batch, f"inference: {exc}")
            return
        except Exception as exc:
            log.exception("inference failed on a batch of %d", len(batch))
            self._retry_later(batch, f"inference: {exc!r}")
            return
        seconds = time.perf_counter() - t0
        self.observer.batch(len(batch), self.tagger.batch_size)
        self.observer.stage(Stage.INFER, distinct(r for r, *_ in batch), len(batch), began, seconds)
        per_item_ms = round(seconds * 1000 / len(batch), 3)
        now = time.time()
        self._emit([self._tagged(run, key, tags, started, now, per_item_ms)
                    for (run, key, _, started), tags in zip(batch, all_tags, strict=True)])

    def _retry_later(self, batch: list[_Ready], reason: str) -> None:
        """The batch's items as transient failures: their tasks go back to the queue."""
        self._emit([Outcome(run, key, None, transient=reason) for run, key, _, _ in batch])

    def _tagged(self, run: Run, key: str, tags: list[Tag] | ItemError, started: float,
                now: float, infer_ms: float) -> Outcome:
        if isinstance(tags, ItemError):  # the model found this input unusable
            return self._failed(run, key, str(tags), started)
        return Outcome(run, key, ItemResult(
            job=run.task.job, key=key, status=ItemStatus.DONE, tags=tuple(tags),
            worker=self.worker_id, started_at=started, finished_at=now, infer_ms=infer_ms))
