"""One way into a job: a JobRequest, resolved by one precedence rule, checked once, enqueued.

The CLI, the API, the inbox and any later trigger build a JobRequest and call
``create_job``: what the request says wins, then what its manifest says, then
the defaults (the manifest's own folder as input, GPUFLEET_OUTPUT, GPUFLEET_MODEL).
The model spec is made canonical (``models.base.canonical_spec``), so one model
is one queue however its spec is spelled.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from gpufleet import tracing
from gpufleet.config import Settings
from gpufleet.domain import Job
from gpufleet.enqueuing import ENQUEUE_LEASE_S, enqueue_pending, finish_interrupted, new_enqueuer_id
from gpufleet.errors import ConfigError, GpufleetError, ManifestError
from gpufleet.index import Index
from gpufleet.index.enqueue_marks import EnqueueMarks
from gpufleet.manifest import MAX_DEADLINE_S, MAX_PRIORITY, ManifestStream
from gpufleet.models.base import canonical_spec
from gpufleet.notify.events import job_created
from gpufleet.notify.targets import TargetStore
from gpufleet.preprocess.chain import canonical_chain
from gpufleet.shards import expand_shards
from gpufleet.store import open_location

RESULTS = ("objects", "shards")  # how a job's results are written: per item, per task
log = logging.getLogger(__name__)


def new_job_id() -> str:
    # Sorts by creation time; the random tail keeps ids unique across machines.
    return time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


@dataclass(frozen=True, kw_only=True)
class JobRequest:
    """What a job is made from. Exactly one of items and manifest; None means "not said"."""

    items: Iterable[str] | None = None
    manifest: ManifestStream | None = None  # read as a stream while the job is recorded
    input: str | None = None
    output: str | None = None
    model: str | None = None
    deadline_s: float | None = None
    priority: int | None = None
    preprocess: str | None = None  # a preprocessing chain spec (preprocess/chain.py)
    tenant: str = "default"
    job_id: str | None = None  # an inbox derives it from the manifest's version
    default_input: str | None = None  # where keys live when neither request nor manifest says
    results: str = "objects"  # or "shards": one JSONL object per task (worker/result_shards.py)

    def settled(self) -> JobRequest:
        """The one precedence rule: what the request says, else what its manifest says (its
        header, as far as it is read), else where keys live by default. The deployment's
        defaults (output, model) are create_job's, so a client can settle a request too."""
        if (self.items is None) == (self.manifest is None):
            raise ManifestError("give either items or a manifest")
        said = self.manifest
        input = self.input or (said.input if said else None) or self.default_input
        return replace(
            self, input=input,
            deadline_s=self.deadline_s if self.deadline_s is not None or said is None
            else said.deadline_s,
            priority=self.priority if self.priority is not None or said is None
            else said.priority,
            preprocess=self.preprocess if self.preprocess is not None or said is None
            else said.preprocess)

    def keys(self) -> Iterable[str]:
        if self.manifest is not None:
            return self.manifest.keys()
        assert self.items is not None
        return self.items


def create_job(settings: Settings, index: Index, request: JobRequest) -> Job:
    """Settle the request, check it, record the job and enqueue its tasks."""
    job = request.settled()
    model = canonical_spec(job.model or settings.model)
    preprocess = canonical_chain(job.preprocess)  # a bad chain: one line, before anything
    if job.input is None:
        raise ManifestError("no input location: say where the keys live")
    job_id = job.job_id or new_job_id()
    # The root of the job's trace: its tasks carry it to the workers (enqueuing.py).
    with tracing.tracer().start_as_current_span("submit", attributes={
            "gpufleet.job.id": job_id, "gpufleet.model": model,
            "gpufleet.tenant": job.tenant}) as span:
        created = enqueue_job(settings, index, job_id, job.keys(), input=job.input,
                              output=job.output or settings.output, model=model,
                              deadline_s=job.deadline_s, priority=job.priority or 0,
                              tenant=job.tenant, preprocess=preprocess, results=job.results)
        span.set_attribute("gpufleet.items", created.counts.total)
        return created


def check_results(results: str) -> None:
    """How a job's results are written: one of RESULTS, or a one-line ConfigError."""
    if results not in RESULTS:
        raise ConfigError(f"results must be {' or '.join(RESULTS)}, not {results!r}")


def enqueue_job(settings: Settings, index: Index, job_id: str, keys: Iterable[str], *,
                input: str, output: str, model: str, deadline_s: float | None = None,
                priority: int = 0, tenant: str = "default",
                preprocess: str | None = None, results: str = "objects") -> Job:
    """Record the job with its items, then enqueue its tasks.

    The job is marked as being enqueued until every task is on the queue: if this process
    dies midway, the next gpufleet process that looks (a submit, a worker starting, the
    controller, the API) enqueues the rest. If the queue cannot be reached before any task
    is enqueued, the job is removed again and the error raised.
    """
    if deadline_s is not None and not 0 < deadline_s <= MAX_DEADLINE_S:
        raise ConfigError(f"deadline must be more than 0 and at most {MAX_DEADLINE_S:,} s "
                          f"(30 days), not {deadline_s:g}")
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise ConfigError(f"priority must be from {-MAX_PRIORITY} to {MAX_PRIORITY}")
    check_results(results)
    input_location = open_location(input, settings=settings)
    output_location = open_location(output, settings=settings)
    finish_interrupted(settings, index)  # this process looks: finish what others left
    enqueuer = new_enqueuer_id()
    # A tar shard's key becomes its members' (shards.py); member keys pass as they are.
    members: Iterable[str] = expand_shards(input_location, keys,
                                           max_entries=settings.tasks.max_shard_entries)
    if isinstance(keys, list | tuple):
        # Keys already in memory (a folder, a prefix, the API's items): their shards are
        # read before the index's transaction opens, so a slow store never holds the
        # index's write lock (SQLite's is the whole file). A manifest stays a stream.
        members = list(members)
    job = index.create_job(job_id, model=model, input=input_location.uri,
                           output=output_location.uri, keys=members, deadline_s=deadline_s,
                           priority=priority, tenant=tenant, enqueuer=enqueuer,
                           enqueuer_lease_s=ENQUEUE_LEASE_S,
                           preprocess=canonical_chain(preprocess), results=results)
    marks = EnqueueMarks(index)
    claim = marks.held(job_id, enqueuer)
    try:
        enqueue_pending(settings, index, job, claim)
    except GpufleetError as exc:
        if marks.untouched(claim):
            index.delete_job(job_id)  # nothing is on the queue: no job without its tasks
            raise
        marks.hand_over(claim)
        raise type(exc)(f"{exc}; job {job_id} was created and the rest of its tasks will be "
                        "enqueued by the next gpufleet process (do not submit it again)"
                        ) from exc
    except BaseException:  # interrupted: the next process that looks goes on from the mark
        marks.hand_over(claim)
        raise
    job = index.job(job_id)
    try:  # the created event, now; if the index is away, the dispatcher notices it later
        job_created(index, TargetStore(index, settings.notify), job)
    except GpufleetError as exc:
        log.warning("job %s: its created event waits for the dispatcher: %s", job_id, exc)
    return job
