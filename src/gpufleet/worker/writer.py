"""Writing a batch of outcomes: result objects concurrently, then index rows in one statement.

Three promises are kept here:

- **Fenced.** A task whose lease is gone writes nothing. A lease the heartbeat
  has not confirmed for half its length (the worker was frozen: SIGSTOP, a long
  pause, a stalled VM) is asked of the queue before writing, so a worker that
  thaws after another finished the task does not overwrite its results.
- **One item's failure is that item's.** A result that no retry can write (a
  key the store refuses) fails that item with its own reason; a transient store
  error retries only the tasks it touched. Other items, jobs and tenants in the
  same batch never see it.
- **Idempotent.** Objects are rewritten whole and rows are upserts, so a task
  delivered twice leaves the same result once.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from functools import partial

from gpufleet.domain import ItemResult, ItemStatus
from gpufleet.errors import GpufleetError, ItemError
from gpufleet.index import Index
from gpufleet.queue import TaskQueue
from gpufleet.store import Location
from gpufleet.worker.io_pools import IoPools
from gpufleet.worker.ledger import Run
from gpufleet.worker.observer import Observer, TaskEnd
from gpufleet.worker.result_shards import ShardBuffer, put_shard

log = logging.getLogger(__name__)
_PIECE = 32  # result objects written by one thread in a row


@dataclass(slots=True)
class Outcome:
    """One item out of the pipeline: a result to write, or a transient failure."""

    run: Run
    key: str
    result: ItemResult | None
    transient: str | None = None


class ResultWriter:
    def __init__(self, *, index: Index, queue: TaskQueue, model: str, pools: IoPools,
                 lease_s: float, on_index_down: Callable[[str], None],
                 observer: Observer | None = None) -> None:
        self.index, self.queue, self.model, self.pools = index, queue, model, pools
        self.observer = observer or Observer()  # told of a task whose lease is found lost
        self.lease_s = lease_s
        self.on_index_down = on_index_down
        self.shards = ShardBuffer()

    def put(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """Write the result objects of what may be written; returns the outcomes settled
        now, transient where writing failed (a shard-mode task's are held until all of
        them are here: result_shards.py). Their rows are recorded next, never before."""
        self._fence({o.run for o in outcomes})
        single, shards = self.shards.hold(outcomes)
        by_run: dict[Run, list[Outcome]] = defaultdict(list)  # (a pool is found per task)
        for o in single:
            if o.result is not None and not o.run.released:
                by_run[o.run].append(o)
        by_pool: dict[Executor | None, list[Outcome]] = defaultdict(list)
        for run, live in by_run.items():
            by_pool[self.pools.parallel_for(run.output)].extend(live)
        calls: list[tuple[Executor | None, Callable[[], object]]] = [
            (pool, partial(self._put_objects, live[i:i + _PIECE]))
            for pool, live in by_pool.items() for i in range(0, len(live), _PIECE)]
        calls += [(self.pools.parallel_for(shard[0].run.output),
                   partial(put_shard, shard, self.model)) for shard in shards]
        futures = [pool.submit(call) for pool, call in calls if pool is not None]
        for pool, call in calls:
            if pool is None:  # a store that takes one request at a time: this thread writes
                call()
        for future in futures:
            future.result()
        return single + [o for shard in shards for o in shard]

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Record the rows of outcomes that put wrote, many to a statement; where the index
        cannot take them, each becomes transient (its task is retried)."""
        live = [o for o in outcomes if o.result is not None and not o.run.released]
        rows = [o.result for o in live if o.transient is None and o.result is not None]
        try:
            self.index.record(rows)
        except GpufleetError as exc:
            log.warning("cannot record %d result(s), their tasks will be retried: %s",
                        len(rows), exc)
            self.on_index_down(str(exc))
            for o in live:
                o.transient = o.transient or f"record: {exc}"

    def write(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """put, then record: the outcomes settled now."""
        settled = self.put(outcomes)
        self.record(settled)
        return settled

    def _fence(self, runs: set[Run]) -> None:
        now = time.monotonic()
        for run in runs:
            if run.released or now - run.confirmed_at < self.lease_s / 2:
                continue
            try:
                held = self.queue.extend(run.lease, visibility_timeout_s=self.lease_s)
            except GpufleetError as exc:  # cannot tell: do not write over someone else
                log.warning("cannot confirm a lease of job %s before writing: %s",
                            run.task.job, exc)
                held = False
            if held:
                run.confirmed_at = now
            else:
                log.warning("lost the lease on a task of job %s: its results are not written",
                            run.task.job)
                run.released = True
                self.observer.task_ended(run, TaskEnd.LOST)

    def _put_objects(self, outcomes: list[Outcome]) -> None:
        """Write these outcomes' result objects, each location's together (put_many: all
        in flight at once where the store can)."""
        by_output: dict[Location, list[Outcome]] = defaultdict(list)
        for o in outcomes:
            by_output[o.run.output].append(o)
        for output, mine in by_output.items():
            written = output.put_many(
                [(f"{o.key}.json", self._document(o)) for o in mine],
                content_type="application/json")
            for o, error in zip(mine, written, strict=True):
                if isinstance(error, ItemError):  # a key never writable: fail this item alone
                    assert o.result is not None
                    o.result = replace(o.result, status=ItemStatus.FAILED, tags=(),
                                       error=f"cannot write the result: {error}")
                elif error is not None:  # store trouble: retry this item's task later
                    o.transient = f"write {o.key}: {error}"

    def _document(self, o: Outcome) -> bytes:
        assert o.result is not None
        return o.result.document(self.model, o.run.task.preprocess)
