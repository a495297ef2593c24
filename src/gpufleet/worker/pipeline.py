"""fetch ▶ decode ▶ micro-batch ▶ infer ▶ write, overlapped so the model never waits.

Threads: the caller receives tasks; a pool fetches objects; a pool sized to
the cores decodes them; one thread gathers decoded items across tasks into
the model's batch size and runs inference; one thread writes result objects
and index rows and then settles each task (ack, or nack with backoff when a
transient failure touched it); one thread heartbeats the leases. A bounded
number of items is in flight, so memory stays flat however long the queue.
"""

from __future__ import annotations

import json
import logging
import os
import queue as stdlib_queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gpufleet.config import Settings
from gpufleet.domain import ItemResult, ItemStatus, Task
from gpufleet.errors import GpufleetError, ItemError, Unavailable
from gpufleet.index import Index
from gpufleet.models import Tagger
from gpufleet.queue import Backoff, Lease, TaskQueue, nack
from gpufleet.queue.batch import ack_many
from gpufleet.store import Location, open_location

log = logging.getLogger(__name__)
_STOP = object()
_BATCH_WAIT_S = 0.02  # how long a partial batch waits for company before it runs
_CANCEL_CHECK_S = 2.0  # how stale a job's cancelled flag may be before it is read again
_RECEIVE_WAIT_S = 2.0  # long poll (SQS, Redis) when the queue is empty; bounds SIGTERM's delay
_OUTAGE_MAX_S = 5.0  # while the queue is unreachable, receive retries back off up to this


@dataclass(eq=False)
class _Run:
    """One leased task on its way through the pipeline."""

    lease: Lease
    task: Task
    input: Location
    output: Location
    remaining: int
    error: str | None = None  # a transient failure: the task is retried, not acked
    released: bool = False  # the lease is gone (lost, or handed back on drain)


@dataclass(slots=True)
class _Outcome:
    run: _Run
    key: str
    result: ItemResult | None
    transient: str | None = None


@dataclass
class PipelineStats:
    items: int = 0
    tasks: int = 0
    started_at: float = field(default_factory=time.time)


class Pipeline:
    def __init__(self, *, tagger: Tagger, queue: TaskQueue, index: Index, settings: Settings,
                 worker_id: str, on_state: Callable[[str], None] = lambda s: None,
                 drain_grace_s: Callable[[], float] | None = None) -> None:
        self.tagger, self.queue, self.index, self.settings = tagger, queue, index, settings
        self.worker_id = worker_id
        self.on_state = on_state
        # At drain time: a spot notice may leave less than GPUFLEET_DRAIN_GRACE_S.
        self.drain_grace_s = drain_grace_s or (lambda: settings.drain_grace_s)
        self.state = "ready"
        self.backoff = Backoff(max_receives=settings.max_receives,
                               base_s=settings.backoff_base_s, max_s=settings.backoff_max_s)
        # Items received but not yet written: enough to keep every stage busy, no more.
        self.capacity = max(3 * settings.chunk_size, 4 * tagger.batch_size)
        self.stats = PipelineStats()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified when items leave the pipeline
        self._runs: set[_Run] = set()
        self._in_flight = 0
        self._ready: stdlib_queue.Queue[Any] = stdlib_queue.Queue()
        self._written: stdlib_queue.Queue[Any] = stdlib_queue.Queue()
        self._locations: dict[str, Location] = {}
        self._cancel_checks: dict[str, tuple[float, bool]] = {}  # job -> (checked at, cancelled)
        self._outage_s = 0.0  # the current wait between receives while the queue is unreachable
        self._fetch_pool = ThreadPoolExecutor(settings.fetch_concurrency, "fetch")
        self._decode_pool = ThreadPoolExecutor(
            settings.decode_threads or os.cpu_count() or 1, "decode")

    # The receiving loop ------------------------------------------------------

    def run(self, *, stop: threading.Event, max_idle_s: float | None = None) -> PipelineStats:
        threads = [threading.Thread(target=fn, name=name, daemon=True) for fn, name in
                   ((self._infer_loop, "infer"), (self._write_loop, "write"),
                    (self._heartbeat_loop, "heartbeat"))]
        hb_stop = threading.Event()
        self._hb_stop = hb_stop
        for t in threads:
            t.start()
        idle_since = time.monotonic()
        poll_s = 0.05
        self._set_state("ready")
        while not stop.is_set():
            with self._room:
                # A full pipeline waits for room to free up, not for a poll interval.
                while self.capacity - self._in_flight < self.settings.chunk_size:
                    if stop.is_set():
                        break
                    self._room.wait(0.5)
                room = self.capacity - self._in_flight
                busy = self._in_flight > 0
            if stop.is_set():
                break
            leases = self._receive(room, stop)
            if leases:
                poll_s = 0.05
                self._set_state("busy")
                for lease in leases:
                    self._start(lease)
                continue
            if busy:
                idle_since = time.monotonic()
            elif max_idle_s is not None and time.monotonic() - idle_since >= max_idle_s:
                log.info("idle for %.0f s: stopping", max_idle_s)
                break
            else:
                self._set_state("ready")
            stop.wait(poll_s)  # the queue is empty: back off, up to half a second
            poll_s = min(0.5, poll_s * 2)
        self._drain()
        hb_stop.set()
        self._ready.put(_STOP)
        for t in threads:
            t.join(timeout=5)
        self._fetch_pool.shutdown(wait=False, cancel_futures=True)
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
        return self.stats

    def _set_state(self, state: str) -> None:
        self.state = state
        self.on_state(state)

    def _receive(self, room: int, stop: threading.Event) -> list[Lease]:
        try:
            leases = self.queue.receive(max(1, room // self.settings.chunk_size),
                                        visibility_timeout_s=self.settings.visibility_timeout_s,
                                        wait_s=_RECEIVE_WAIT_S)
        except Unavailable as exc:  # wait it out, backing off; in-flight work carries on
            self._outage_s = min(_OUTAGE_MAX_S, max(0.5, 2 * self._outage_s))
            log.warning("cannot receive tasks, retrying in %.1f s: %s", self._outage_s, exc)
            stop.wait(self._outage_s)
            return []
        self._outage_s = 0.0
        return leases

    def _drain(self) -> None:
        """Finish what fits in the grace period, then hand the rest back at once."""
        self._set_state("draining")
        deadline = time.monotonic() + self.drain_grace_s()
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight:
                    return
            time.sleep(0.05)
        with self._lock:
            runs = [r for r in self._runs if not r.released]
            for r in runs:
                r.released = True
        for r in runs:
            self._safely(self.queue.release, r.lease, delay_s=0.0)
        log.warning("grace period over: released %d unfinished task(s)", len(runs))

    def _start(self, lease: Lease) -> None:
        try:
            task = Task.decode(lease.body)
            # Results go to <output>/<job>/<item key>.json: rewriting one is harmless.
            output = self._location(task.output).child(task.job)
            run = _Run(lease, task, self._location(task.input), output,
                       remaining=len(task.keys))
        except (ValueError, KeyError, TypeError, GpufleetError) as exc:
            # A message no worker can read will never succeed: dead-letter it now.
            self._safely(self.queue.dead_letter, lease, error=f"bad task: {exc}")
            return
        if self._cancelled(task.job):  # dropped unprocessed; tasks already running finish
            log.info("dropping a task of cancelled job %s", task.job)
            self._safely(self.queue.ack, lease)
            return
        with self._lock:
            self._runs.add(run)
            self._in_flight += run.remaining
        self.stats.tasks += 1
        for key in task.keys:
            self._fetch_pool.submit(self._fetch, run, key)

    def _location(self, uri: str) -> Location:
        if uri not in self._locations:
            self._locations[uri] = open_location(uri, settings=self.settings)
        return self._locations[uri]

    def _cancelled(self, job: str) -> bool:
        """Whether the job is cancelled, asked of the index at most every _CANCEL_CHECK_S."""
        now = time.monotonic()
        known = self._cancel_checks.get(job)
        if known is None or now - known[0] > _CANCEL_CHECK_S:
            try:
                known = (now, self.index.is_cancelled(job))
            except GpufleetError:  # the index is down: work as usual, writes will retry
                known = (now, False)
            if len(self._cancel_checks) > 10_000:
                self._cancel_checks.clear()
            self._cancel_checks[job] = known
        return known[1]

    # Stages ----------------------------------------------------------------

    def _fetch(self, run: _Run, key: str) -> None:
        started = time.time()
        try:
            data = run.input.get(key)
            if len(data) > self.settings.max_object_bytes:
                raise ItemError(f"object is {len(data):,} bytes, over the limit of "
                                f"{self.settings.max_object_bytes:,}")
        except ItemError as exc:
            self._ready.put(self._failed(run, key, str(exc), started))
        except Exception as exc:  # store trouble: retry the whole task later
            self._ready.put(_Outcome(run, key, None, transient=f"fetch {key}: {exc}"))
        else:
            self._decode_pool.submit(self._decode, run, key, data, started)

    def _decode(self, run: _Run, key: str, data: bytes, started: float) -> None:
        try:
            payload = self.tagger.preprocess(data)
        except ItemError as exc:
            self._ready.put(self._failed(run, key, str(exc), started))
        except Exception as exc:  # an input must never kill the worker
            log.exception("unexpected error decoding %s", key)
            self._ready.put(self._failed(run, key, f"cannot decode: {exc!r}", started))
        else:
            self._ready.put((run, key, payload, started))

    def _failed(self, run: _Run, key: str, error: str, started: float) -> _Outcome:
        return _Outcome(run, key, ItemResult(
            job=run.task.job, key=key, status=ItemStatus.FAILED, error=error,
            worker=self.worker_id, started_at=started, finished_at=time.time()))

    def _infer_loop(self) -> None:
        batch: list[tuple[_Run, str, Any, float]] = []
        deadline = 0.0
        while True:
            timeout = max(0.0, deadline - time.monotonic()) if batch else None
            try:
                entry = self._ready.get(timeout=timeout)
            except stdlib_queue.Empty:
                entry = None
            if entry is _STOP:
                self._infer(batch)
                self._written.put(_STOP)
                return
            if isinstance(entry, _Outcome):
                self._written.put([entry])
            elif entry is not None:
                if not batch:
                    deadline = time.monotonic() + _BATCH_WAIT_S
                batch.append(entry)
            if batch and (entry is None or len(batch) >= self.tagger.batch_size):
                self._infer(batch)
                batch = []

    def _infer(self, batch: list[tuple[_Run, str, Any, float]]) -> None:
        if not batch:
            return
        t0 = time.perf_counter()
        try:
            all_tags = self.tagger.infer([payload for _, _, payload, _ in batch])
            if len(all_tags) != len(batch):
                raise RuntimeError(f"model returned {len(all_tags)} results for {len(batch)}")
        except Exception as exc:
            log.exception("inference failed on a batch of %d", len(batch))
            self._written.put([_Outcome(run, key, None, transient=f"inference: {exc!r}")
                               for run, key, _, _ in batch])
            return
        per_item_ms = (time.perf_counter() - t0) * 1000 / len(batch)
        now = time.time()
        self._written.put([
            _Outcome(run, key, ItemResult(
                job=run.task.job, key=key, status=ItemStatus.DONE, tags=tuple(tags),
                worker=self.worker_id, started_at=started, finished_at=now,
                infer_ms=round(per_item_ms, 3)))
            for (run, key, _, started), tags in zip(batch, all_tags, strict=True)])

    def _write_loop(self) -> None:
        while True:
            first = self._written.get()
            if first is _STOP:
                return
            outcomes: list[_Outcome] = list(first)
            while len(outcomes) < 256:  # write what has piled up in one transaction
                try:
                    more = self._written.get_nowait()
                except stdlib_queue.Empty:
                    break
                if more is _STOP:
                    self._written.put(_STOP)
                    break
                outcomes.extend(more)
            self._write(outcomes)

    def _write(self, outcomes: list[_Outcome]) -> None:
        results = [o for o in outcomes if o.result is not None]
        try:
            for o in results:
                assert o.result is not None
                body = {**o.result.to_json(), "model": self.tagger.name}
                o.run.output.put(f"{o.key}.json", json.dumps(body).encode(),
                                 content_type="application/json")
            self.index.record([o.result for o in results if o.result is not None])
        except Exception as exc:
            log.warning("cannot record %d result(s), their tasks will be retried: %s",
                        len(results), exc)
            for o in results:
                o.transient = f"record: {exc}"
        # Tasks finished together are acked together: one request where the queue can (SQS).
        acks = [lease for o in outcomes if (lease := self._settle(o)) is not None]
        if acks:
            self._safely(ack_many, self.queue, acks)

    def _settle(self, outcome: _Outcome) -> Lease | None:
        """Count one item out; when its task is done, retry it or return its lease to ack."""
        run = outcome.run
        with self._lock:
            self._in_flight -= 1
            self._room.notify()
            run.remaining -= 1
            if outcome.transient and not run.error:
                run.error = outcome.transient
            elif not outcome.transient:
                self.stats.items += 1
            if run.remaining:
                return None
            self._runs.discard(run)
            if run.released:
                return None
        if run.error is None:
            return run.lease
        error = run.error

        def retry() -> None:
            if nack(self.queue, run.lease, error=error, backoff=self.backoff):
                log.error("task of job %s dead-lettered after %d receives: %s",
                          run.task.job, run.lease.receives, error)
                self.index.fail_pending(run.task.job, run.task.keys,
                                        error=f"dead-lettered: {error}")

        self._safely(retry)
        return None

    def _heartbeat_loop(self) -> None:
        # Leases are extended at a third of their length, so two missed beats are survivable;
        # the worker registry hears from us more often, so a fleet view stays fresh.
        extend_every_s = self.settings.visibility_timeout_s / 3
        last_extend = time.monotonic()
        while not self._hb_stop.wait(min(5.0, extend_every_s)):
            self._safely(self.on_state, self.state)
            if time.monotonic() - last_extend < extend_every_s * 0.99:
                continue
            last_extend = time.monotonic()
            with self._lock:
                runs = [r for r in self._runs if not r.released]
            for run in runs:
                kept = self._safely(self.queue.extend, run.lease,
                                    visibility_timeout_s=self.settings.visibility_timeout_s)
                if kept is False:
                    log.warning("lost the lease on a task of job %s", run.task.job)
                    with self._lock:
                        run.released = True

    def _safely(self, action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Queue and index calls off the hot path: an outage is logged, the lease expires."""
        try:
            return action(*args, **kwargs)
        except GpufleetError as exc:
            log.warning("%s", exc)
            return None
