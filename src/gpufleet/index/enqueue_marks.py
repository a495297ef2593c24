"""How far a job's tasks are on its queue, and who is putting them there.

A job's tasks are enqueued from its pending items in key order. While that
goes on, the job row names the enqueuer, a lease (``enqueuer_until``) and the
last key enqueued (``enqueued_through``); the enqueuer extends the lease as
it advances the mark. When the enqueuer dies (a killed `gpufleet submit`), its
lease runs out and any process that looks (a submit, a worker starting, the
controller, the API) claims the job and goes on from the mark: a job ends
fully queued whatever happens to the process that created it. Every change is
a compare-and-set on the enqueuer, so two processes never enqueue one job at
once, and an enqueuer that lost its lease learns it at its next step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import exists, func, select, update

from gpufleet.domain import ItemStatus
from gpufleet.index.repo import Index
from gpufleet.index.schema import items, jobs


@dataclass(frozen=True, slots=True)
class IdleJob:
    """A job with pending items, fully enqueued, and nothing done on it for a while."""

    id: str
    pending: int
    requeues: int


@dataclass(frozen=True, slots=True)
class Enqueuing:
    """A claim on enqueueing one job: go on after `through` (None: from the first key)."""

    job_id: str
    enqueuer: str
    through: str | None


class EnqueueMarks:
    def __init__(self, index: Index) -> None:
        self.index = index

    def held(self, job_id: str, enqueuer: str) -> Enqueuing:
        """The claim its creator holds from the start (create_job with an enqueuer)."""
        return Enqueuing(job_id, enqueuer, None)

    def expired(self, *, alive: Callable[[str], bool | None] = lambda _: None
                ) -> list[tuple[str, str]]:
        """(job, enqueuer) of every enqueueing whose enqueuer is gone: its lease ran out, or
        alive(enqueuer) says False (a process on this machine that has exited)."""
        query = select(jobs.c.id, jobs.c.enqueuer, jobs.c.enqueuer_until).where(
            jobs.c.enqueuer.is_not(None))
        with self.index.transaction() as conn:
            rows = list(conn.execute(query.order_by(jobs.c.id)))
        now = self.index.clock()
        return [(r.id, r.enqueuer) for r in rows
                if r.enqueuer_until < now or alive(r.enqueuer) is False]

    def claim(self, job_id: str, gone: str, enqueuer: str, *, lease_s: float
              ) -> Enqueuing | None:
        """Take over from an enqueuer that is gone; None if another process was quicker."""
        now = self.index.clock()
        with self.index.transaction() as conn:
            taken = conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.enqueuer == gone)
                .values(enqueuer=enqueuer, enqueuer_until=now + lease_s)).rowcount
            if not taken:
                return None
            through = conn.execute(select(jobs.c.enqueued_through)
                                   .where(jobs.c.id == job_id)).scalar()
        return Enqueuing(job_id, enqueuer, through)

    def requeue(self, job_id: str, enqueuer: str, *, lease_s: float, max_requeues: int
                ) -> Enqueuing | None:
        """Start enqueueing a job's pending items again from the first key (the sweeper),
        at most max_requeues times per job; None once they are used up or if it is held."""
        now = self.index.clock()
        with self.index.transaction() as conn:
            taken = conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.enqueuer.is_(None),
                                   jobs.c.requeues < max_requeues)
                .values(enqueuer=enqueuer, enqueuer_until=now + lease_s,
                        enqueued_through=None, requeues=jobs.c.requeues + 1)).rowcount
        return Enqueuing(job_id, enqueuer, None) if taken else None

    def pending_keys(self, claim: Enqueuing, *, limit: int) -> list[str]:
        """The next pending keys after the mark, in key order."""
        query = (select(items.c.key).where(items.c.job_id == claim.job_id,
                                           items.c.status == ItemStatus.PENDING.value)
                 .order_by(items.c.key).limit(limit))
        if claim.through is not None:
            query = query.where(items.c.key > claim.through)
        with self.index.transaction() as conn:
            return list(conn.execute(query).scalars())

    def advance(self, claim: Enqueuing, through: str, *, lease_s: float) -> Enqueuing | None:
        """Record that every pending key up to `through` is enqueued and extend the lease;
        None if the lease was lost (another process goes on from the mark)."""
        with self.index.transaction() as conn:
            kept = conn.execute(
                update(jobs).where(jobs.c.id == claim.job_id, jobs.c.enqueuer == claim.enqueuer)
                .values(enqueued_through=through,
                        enqueuer_until=self.index.clock() + lease_s)).rowcount
        return Enqueuing(claim.job_id, claim.enqueuer, through) if kept else None

    def finish(self, claim: Enqueuing) -> bool:
        """Every task is enqueued: the job is fully queued. False if the lease was lost."""
        with self.index.transaction() as conn:
            return bool(conn.execute(
                update(jobs).where(jobs.c.id == claim.job_id, jobs.c.enqueuer == claim.enqueuer)
                .values(enqueuer=None, enqueuer_until=None, enqueued_through=None,
                        enqueued_at=self.index.clock())).rowcount)

    def untouched(self, claim: Enqueuing) -> bool:
        """Whether nothing of the job was enqueued yet under this claim's enqueuer."""
        with self.index.transaction() as conn:
            row = conn.execute(select(jobs.c.enqueuer, jobs.c.enqueued_through)
                               .where(jobs.c.id == claim.job_id)).first()
        return row is not None and row.enqueuer == claim.enqueuer and row.enqueued_through is None

    def hand_over(self, claim: Enqueuing) -> None:
        """Give up the lease now (this process is going away): the next look goes on."""
        with self.index.transaction() as conn:
            conn.execute(update(jobs).where(jobs.c.id == claim.job_id,
                                            jobs.c.enqueuer == claim.enqueuer)
                         .values(enqueuer_until=0.0))

    def idle(self, model: str, *, since: float) -> list[IdleJob]:
        """Jobs of the model, not cancelled and not being enqueued, with pending items and no
        activity (created, enqueued, an item finished) since `since`."""
        pending_item = exists().where(items.c.job_id == jobs.c.id,
                                      items.c.status == ItemStatus.PENDING.value)
        open_jobs = (select(jobs.c.id, jobs.c.requeues).where(
            jobs.c.model == model, jobs.c.cancelled.is_(False), jobs.c.enqueuer.is_(None),
            func.coalesce(jobs.c.enqueued_at, jobs.c.created_at) < since, pending_item))
        found = []
        with self.index.transaction() as conn:
            for row in conn.execute(open_jobs.order_by(jobs.c.id)):
                pending, last = conn.execute(select(
                    func.count().filter(items.c.status == ItemStatus.PENDING.value),
                    func.max(items.c.finished_at)).where(items.c.job_id == row.id)).one()
                if pending and (last is None or last < since):
                    found.append(IdleJob(row.id, int(pending), int(row.requeues)))
        return found
