"""Putting a job's pending items on its queue as tasks, resumably.

The mark and the lease live in the job row (index/enqueue_marks.py); this
module does the work: page through the pending keys after the mark in key
order, enqueue them in tasks of GPUFLEET_CHUNK_SIZE items, advance the mark.
A task enqueued twice (the mark was not yet advanced when its enqueuer died)
is harmless: results are idempotent.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket

from opentelemetry.trace import SpanKind

from gpufleet import tracing
from gpufleet.config import Settings
from gpufleet.domain import Job, Task
from gpufleet.index import Index
from gpufleet.index.enqueue_marks import EnqueueMarks, Enqueuing
from gpufleet.queue import open_queue

log = logging.getLogger(__name__)
ENQUEUE_LEASE_S = 30.0  # an enqueuer silent this long is taken for dead
_TASKS_PER_STEP = 100  # tasks enqueued between two advances of the mark


def new_enqueuer_id() -> str:
    """host/pid/random: a process on the same host can tell whether the enqueuer is alive."""
    return f"{socket.gethostname()[:40]}/{os.getpid()}/{secrets.token_hex(3)}"


def enqueuer_alive(enqueuer: str) -> bool | None:
    """Whether the enqueuer's process still runs; None when that cannot be told from here
    (another host: its lease decides). A pid reused since reads as alive: the lease decides."""
    host, _, rest = enqueuer.partition("/")
    pid = rest.partition("/")[0]
    if host != socket.gethostname()[:40] or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def enqueue_pending(settings: Settings, index: Index, job: Job, claim: Enqueuing) -> bool:
    """Enqueue the job's pending items after the claim's mark, then mark the job fully
    queued. False if the claim was lost meanwhile (another process goes on)."""
    marks = EnqueueMarks(index)
    size = settings.tasks.chunk_size
    queue = open_queue(settings.queue, name=job.model)
    current: Enqueuing | None = claim
    with tracing.tracer().start_as_current_span(
            "enqueue", kind=SpanKind.PRODUCER,
            attributes={"gpufleet.job.id": job.id, "gpufleet.model": job.model}) as span:
        traceparent = tracing.current_traceparent()  # each task's worker joins this trace
        tasks = 0
        shards = job.results if job.results != "objects" else None  # sent only when set
        try:
            while current is not None:
                keys = marks.pending_keys(current, limit=size * _TASKS_PER_STEP)
                if not keys:
                    return marks.finish(current)
                bodies = [Task(job.id, tuple(keys[i:i + size]), job.input, job.output,
                               trace=traceparent, preprocess=job.preprocess,
                               results=shards).encode()
                          for i in range(0, len(keys), size)]
                queue.enqueue(bodies)
                tasks += len(bodies)
                span.set_attribute("gpufleet.tasks", tasks)
                current = marks.advance(current, keys[-1], lease_s=ENQUEUE_LEASE_S)
            return False
        finally:
            queue.close()


def finish_interrupted(settings: Settings, index: Index) -> list[str]:
    """Enqueue the rest of every job whose enqueuer died; returns the ids of those finished.

    Cheap when there is none: one query on the jobs table.
    """
    marks = EnqueueMarks(index)
    finished = []
    for job_id, gone in marks.expired(alive=enqueuer_alive):
        claim = marks.claim(job_id, gone, new_enqueuer_id(), lease_s=ENQUEUE_LEASE_S)
        if claim is None:
            continue  # another process took it
        log.warning("job %s: its submission stopped before every task was enqueued; "
                    "enqueueing the rest%s", job_id,
                    f" (after {claim.through!r})" if claim.through else "")
        try:
            if enqueue_pending(settings, index, index.job(job_id), claim):
                finished.append(job_id)
        except BaseException:
            marks.hand_over(claim)
            raise
    return finished
