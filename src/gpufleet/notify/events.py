"""Noticing events: which jobs each target hears of, and what happened to them since.

A job's created event is written as the job is made (``job_created``). Its state
then follows from its items' counts (``domain.Counts.state``); no one write
marks it finished. So later events are noticed by looking, wherever a dispatcher
runs (the controller's tick, the end of ``submit --wait``, ``notify run``), and
written to the outbox keyed by (target, job, event): noticed twice, written once.
A job's events stop being looked for once its finished event is written; a
target that does not want that event gets it written as skipped, for that reason.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import exists, select

from gpufleet.domain import Job
from gpufleet.errors import JobNotFound
from gpufleet.index import Index
from gpufleet.index.outbox import PENDING, Event, Outbox
from gpufleet.index.schema import jobs, notify_outbox
from gpufleet.notify.targets import Target, TargetStore

SKIPPED = "skipped"


def body(event: str, job: Job, at: float) -> str:
    """What every target is sent: the job's summary (counts and cost) with the event."""
    summary = job.summary()
    return json.dumps({"event": event, "at": at, "tenant": job.tenant, "model": job.model,
                       "state": summary["state"], "job": summary,
                       "cost": summary["usage"]["cost"]}, sort_keys=True)


def open_jobs(index: Index, target: Target) -> list[str]:
    """The target's jobs whose finished event is not written yet."""
    finished = exists().where(notify_outbox.c.target_id == target.id,
                              notify_outbox.c.job_id == jobs.c.id,
                              notify_outbox.c.event == "job.finished")
    query = select(jobs.c.id).where(~finished)
    if target.job_id is not None:
        query = query.where(jobs.c.id == target.job_id)
    else:
        query = query.where(jobs.c.tenant == target.tenant,
                            jobs.c.created_at >= target.created_at)
    with index.transaction() as conn:
        return list(conn.execute(query.order_by(jobs.c.id)).scalars())


def notice(index: Index, outbox: Outbox, targets: list[Target]) -> int:
    """Write what happened to each target's open jobs; how many events were new."""
    new = 0
    now = index.clock()
    read: dict[str, Job | None] = {}  # each job read once a pass, however many targets
    for target in targets:
        job_ids = open_jobs(index, target)
        seen = outbox.seen(target.id, job_ids)
        for job_id in job_ids:
            if job_id not in read:
                try:
                    read[job_id] = index.job(job_id)
                except JobNotFound:  # deleted meanwhile
                    read[job_id] = None
            job = read[job_id]
            if job is not None:
                new += outbox.emit(_events(outbox, target, job, seen[job_id], now))
    return new


def job_created(index: Index, targets: TargetStore, job: Job) -> int:
    """Write the events of a job just made for its tenant's targets: at once, so the created
    event says what the job was when made (the next pass would notice it, later)."""
    mine = [t for t in targets.listed(tenant=job.tenant)
            if t.job_id is None and t.created_at <= job.created_at]
    outbox = Outbox(index)
    now = index.clock()
    return outbox.emit([event for t in mine for event in _events(outbox, t, job, set(), now)])


def _events(outbox: Outbox, target: Target, job: Job, seen: set[str], now: float
            ) -> list[Event]:
    found = []

    def add(key: str, event: str) -> None:
        state = PENDING if key.split(":")[0] in target.events else SKIPPED
        found.append(Event(target.id, job.id, key, event, body(event, job, now), state))

    if "job.created" not in seen:
        add("created", "job.created")
    if job.state.finished:
        add("finished", "job.finished")
    elif "progress" in target.events and job.counts.finished and target.progress_s:
        count, last = outbox.progress_state(target.id, job.id)
        if last is None or now - last >= target.progress_s:
            # Keyed by its number: two dispatchers that notice it at once write one row.
            add(f"progress:{count + 1}", "job.progress")
    return found


def attributes(doc: dict[str, Any]) -> dict[str, str]:
    """What a subscription's filter policy can match on (SNS message attributes)."""
    return {name: str(doc.get(name, "")) for name in ("tenant", "model", "state", "event")}
