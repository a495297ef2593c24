"""The sweeper: whatever happened, every job ends succeeded, partial, failed or cancelled.

``sweep`` is cheap and idempotent; the controller calls it on every tick, a
worker once when it starts, ``submit --wait`` every few seconds. It

1. finishes interrupted submissions (their enqueuer died: see enqueuing.py);
2. per model, finds jobs whose pending items have no task anywhere, and
   repairs them: items whose task is a dead letter fail with its error (what
   the worker that dead-lettered it could not record); the others are
   enqueued again, at most GPUFLEET_MAX_REQUEUES times per job, after which
   they fail with the reason.

"No task anywhere" must be cheap and right on every backend, and SQS cannot
be scanned: only its approximate counts are known. So a job is taken as
stranded only when its model's queue holds no task at all, neither queued,
delayed nor in flight (checked before and after reading the jobs, so a task
enqueued in between is seen), and the job has had no activity (created,
enqueued, an item finished) for GPUFLEET_SWEEP_QUIET_S, longer than SQS's
counts lag. While other jobs keep a queue busy, a stranded job waits for it
to empty: cheap, never wrong, and bounded by the work ahead of it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from gpufleet.config import Settings
from gpufleet.domain import Task
from gpufleet.enqueuing import ENQUEUE_LEASE_S, enqueue_pending, finish_interrupted, new_enqueuer_id
from gpufleet.errors import GpufleetError
from gpufleet.index import Index
from gpufleet.index.enqueue_marks import EnqueueMarks, IdleJob
from gpufleet.queue import DeadLetter, TaskQueue, open_queue

log = logging.getLogger(__name__)


@dataclass
class Swept:
    """What one sweep did, by job id."""

    finished: list[str] = field(default_factory=list)  # interrupted submissions enqueued
    requeued: list[str] = field(default_factory=list)  # stranded items enqueued again
    failed: dict[str, int] = field(default_factory=dict)  # items failed, per job


def sweep(settings: Settings, index: Index, *, model: str | None = None) -> Swept:
    """One reconciliation of every job (of one model, if given). Never raises for an
    unreachable backend: it logs, and the next sweep tries again."""
    swept = Swept()
    try:
        swept.finished = finish_interrupted(settings, index)
        models = [model] if model is not None else index.models()
    except GpufleetError as exc:
        log.warning("sweep: %s; trying again later", exc)
        return swept
    for name in models:
        try:
            queue = open_queue(settings.queue, name=name)
        except GpufleetError as exc:
            log.warning("sweep of %s: %s", name, exc)
            continue
        try:
            _sweep_model(settings, index, queue, name, swept)
        except GpufleetError as exc:
            log.warning("sweep of %s: %s; trying again later", name, exc)
        finally:
            queue.close()
    return swept


def _sweep_model(settings: Settings, index: Index, queue: TaskQueue, model: str,
                 swept: Swept) -> None:
    if _busy(queue):
        return  # a worker will move these jobs on (which ones, SQS cannot tell cheaply)
    marks = EnqueueMarks(index)
    stranded = marks.idle(model, since=index.clock() - settings.tasks.sweep_quiet_s)
    if not stranded or _busy(queue):
        return
    dead = _dead_keys(queue) if queue.depth().dead else {}
    for job in stranded:
        failed = sum(index.fail_pending(job.id, keys, error=f"dead-lettered: {error}")
                     for error, keys in dead.get(job.id, {}).items())
        if failed:
            log.warning("job %s: %d item(s) of dead-lettered tasks marked failed", job.id, failed)
        if failed < job.pending:
            failed += _requeue(settings, index, marks, job, swept)
        if failed:
            swept.failed[job.id] = failed


def _requeue(settings: Settings, index: Index, marks: EnqueueMarks, job: IdleJob,
             swept: Swept) -> int:
    """Enqueue the job's pending items again; once the requeues are used up, fail them."""
    claim = marks.requeue(job.id, new_enqueuer_id(), lease_s=ENQUEUE_LEASE_S,
                          max_requeues=settings.tasks.max_requeues)
    if claim is None:
        if job.requeues < settings.tasks.max_requeues:
            return 0  # another process is enqueueing it now
        failed = index.fail_pending(
            job.id, None, error=f"no task left for this item after {job.requeues} "
            "re-enqueue(s): its tasks were lost from the queue")
        log.error("job %s: %d item(s) still had no task after %d re-enqueue(s): failed",
                  job.id, failed, job.requeues)
        return failed
    log.warning("job %s: %d pending item(s) have no task on the queue; enqueueing them "
                "again (%d of %d)", job.id, job.pending, job.requeues + 1,
                settings.tasks.max_requeues)
    try:
        if enqueue_pending(settings, index, index.job(job.id), claim):
            swept.requeued.append(job.id)
    except BaseException:
        marks.hand_over(claim)
        raise
    return 0


def _busy(queue: TaskQueue) -> bool:
    depth = queue.depth()
    return bool(depth.queued or depth.in_flight)


def _dead_keys(queue: TaskQueue) -> dict[str, dict[str, list[str]]]:
    """The keys in dead letters, by job and by error."""
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    letter: DeadLetter
    for letter in queue.dead_letters():
        try:
            task = Task.decode(letter.body)
        except (ValueError, KeyError, TypeError):
            continue  # a body no worker could read names no items
        found[task.job][letter.error].extend(task.keys)
    return found
