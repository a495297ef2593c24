"""Settling a task that will not simply run: given up, split, put back, or retried later.

Every path here ends with the task off this worker (dead-lettered, acked after
its replacements are enqueued, or released with a backoff) and, when its items
are given up, with those items recorded as failed: a failure to record is kept
and retried (``settle_owed``) until the index has it, so a job whose index was
down when a task was given up still ends.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from gpufleet.config import Settings
from gpufleet.domain import Task
from gpufleet.errors import GpufleetError
from gpufleet.index import Index
from gpufleet.queue import Backoff, Lease, TaskQueue
from gpufleet.worker import delivery
from gpufleet.worker.ledger import Run

log = logging.getLogger("gpufleet.worker.pipeline")  # one logger for the pipeline's story


def safely(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Queue and index calls off the hot path: an outage is logged, the lease expires."""
    try:
        return action(*args, **kwargs)
    except GpufleetError as exc:
        log.warning("%s", exc)
        return None


class Settler:
    def __init__(self, *, queue: TaskQueue, index: Index, settings: Settings) -> None:
        self.queue, self.index, self.settings = queue, index, settings
        tasks = settings.tasks
        self.backoff = Backoff(max_receives=tasks.max_receives, base_s=tasks.backoff_base_s,
                               max_s=tasks.backoff_max_s)
        self._owed: deque[tuple[str, tuple[str, ...], str]] = deque()  # items to fail, retried

    def give_up(self, task: Task, lease: Lease, reason: str) -> None:
        log.error("job %s: %s; %d item(s) fail", task.job, reason, len(task.keys),
                  extra={"job": task.job})
        self._owed.append((task.job, task.keys, reason))
        self.settle_owed()
        safely(self.queue.dead_letter, lease, error=reason)

    def split(self, task: Task, lease: Lease) -> None:
        """A redelivered task of several items: one task per item still without an outcome."""
        try:
            recorded = self.index.recorded(task.job, task.keys)
            pieces = delivery.split(task, lease, recorded=recorded)
            if pieces:
                self.queue.enqueue([p.encode() for p in pieces])
        except GpufleetError as exc:  # the lease expires and the task comes back
            log.warning("cannot split a redelivered task of job %s: %s", task.job, exc,
                        extra={"job": task.job})
            return
        log.info("job %s: a task came back after %d deliveries: split into %d item task(s)",
                 task.job, delivery.deliveries(task, lease) - 1, len(pieces),
                 extra={"job": task.job})
        safely(self.queue.ack, lease)

    def unrecorded(self, task: Task, lease: Lease) -> tuple[str, ...]:
        """The items of a task delivered again that still have no outcome; a task with none
        left is acked here. Its earlier delivery may have recorded them all before the ack
        was lost (a queue restarted from its last write, a worker killed between the two):
        doing them again would rewrite results of a job that may have ended."""
        try:
            recorded = self.index.recorded(task.job, task.keys)
        except GpufleetError as exc:  # cannot tell: redo them all, rewriting is harmless
            log.warning("cannot read which items of job %s are recorded: %s", task.job, exc,
                        extra={"job": task.job})
            return task.keys
        if len(recorded) == len(task.keys):
            log.info("job %s: a task came back with every item recorded: acked", task.job,
                     extra={"job": task.job})
            safely(self.queue.ack, lease)
        return tuple(k for k in task.keys if k not in recorded)

    def requeue(self, task: Task, lease: Lease) -> None:
        """Put a task back as a new message carrying its deliveries so far: waiting on the
        queue costs it no delivery, as waiting in a worker that may die would."""
        try:
            used = delivery.deliveries(task, lease) - 1
            self.queue.enqueue([dataclasses.replace(task, attempts=used).encode()])
        except GpufleetError as exc:  # the lease expires and the task comes back
            log.warning("cannot put back a task of job %s: %s", task.job, exc,
                        extra={"job": task.job})
            return
        safely(self.queue.ack, lease)

    def retry(self, run: Run, error: str) -> None:
        """A task that failed for a transient reason: later, with a backoff, or given up."""
        used = delivery.deliveries(run.task, run.lease)
        if used >= self.settings.tasks.max_receives:
            reason = f"dead-lettered after {used} tries: {error}"
            log.error("task of job %s %s", run.task.job, reason, extra={"job": run.task.job})
            self._owed.append((run.task.job, run.keys, reason))
            self.settle_owed()
            self.queue.dead_letter(run.lease, error=error)
            return
        delay_s = self.backoff.delay_s(used)
        # Said, so an operator sees a full disk or a failing store while it is retried, not
        # only when its tasks are dead-lettered.
        log.warning("task of job %s goes back to the queue for %.1f s (try %d of %d): %s",
                    run.task.job, delay_s, used, self.settings.tasks.max_receives, error,
                    extra={"job": run.task.job})
        self.queue.release(run.lease, delay_s=delay_s, error=error)

    def settle_owed(self) -> None:
        """Fail the items of given-up tasks; kept and retried until the index has them."""
        while self._owed:
            job, keys, reason = self._owed[0]
            try:
                self.index.fail_pending(job, keys, error=reason)
            except GpufleetError as exc:
                log.warning("cannot record %d failed item(s) of job %s yet: %s",
                            len(keys), job, exc, extra={"job": job})
                return
            self._owed.popleft()
