"""The notification outbox: events written once, keyed by (target, job, event), then delivered.

An event is noticed (a job created, finished, or progress due) and written here
with an id derived from its target, its job and its event key, so however often
and by however many processes it is noticed, it is one row. The dispatcher
claims due rows with a compare-and-set on ``next_at`` (two dispatchers never
send one row at once), sends them, and records the outcome: delivered, due
again later (a retry), or failed for good. Every attempt is kept in the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gpufleet.index.repo import Index
from gpufleet.index.schema import notify_log, notify_outbox

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_IDS_PER_STATEMENT = 5000  # below SQLite's limit of bound parameters


@dataclass(frozen=True, slots=True)
class Event:
    """One event for one target, before it is written."""

    target_id: str
    job_id: str
    key: str  # unique per job and target: "created", "finished", "progress:3"
    event: str  # job.created, job.finished, job.progress
    body: str
    state: str = PENDING  # or skipped: written (so noticed once) but not sent

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.target_id}\0{self.job_id}\0{self.key}".encode()
                              ).hexdigest()


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: str
    target_id: str
    job_id: str
    event: str
    body: str
    state: str
    attempts: int
    next_at: float
    created_at: float
    finished_at: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt, as `notify log` shows it."""

    outbox_id: str
    target_id: str
    job_id: str
    event: str
    at: float
    attempt: int
    ok: bool
    status: int | None
    error: str | None
    ms: float | None


class Outbox:
    def __init__(self, index: Index) -> None:
        self.index = index

    def emit(self, events: Iterable[Event]) -> int:
        """Write the events not written before; how many were new."""
        now = self.index.clock()
        # A microsecond apart, so the rows of one look go out in the order they were noticed
        # (created before finished); retries may still reorder them.
        rows = [{"id": e.id, "target_id": e.target_id, "job_id": e.job_id, "event": e.event,
                 "body": e.body, "state": e.state, "attempts": 0, "next_at": now,
                 "created_at": now + n * 1e-6} for n, e in enumerate(events)]
        if not rows:
            return 0
        dialect = postgresql if self.index.engine.dialect.name == "postgresql" else sqlite
        # RETURNING counts what was new: psycopg's rowcount here is -1, not 0 or 1.
        statement = dialect.insert(notify_outbox).on_conflict_do_nothing(
            index_elements=[notify_outbox.c.id]).returning(notify_outbox.c.id)
        with self.index.transaction() as conn:
            return sum(len(conn.execute(statement, row).all()) for row in rows)

    def seen(self, target_id: str, job_ids: Sequence[str]) -> dict[str, set[str]]:
        """The events already written for the target, per job (job.created, ...)."""
        found: dict[str, set[str]] = {j: set() for j in job_ids}
        with self.index.transaction() as conn:
            for start in range(0, len(job_ids), _IDS_PER_STATEMENT):
                chunk = list(job_ids[start:start + _IDS_PER_STATEMENT])
                query = select(notify_outbox.c.job_id, notify_outbox.c.event).where(
                    notify_outbox.c.target_id == target_id, notify_outbox.c.job_id.in_(chunk))
                for job_id, event in conn.execute(query):
                    found[job_id].add(event)
        return found

    def progress_state(self, target_id: str, job_id: str) -> tuple[int, float | None]:
        """How many progress events the target had for the job, and when the last was written."""
        with self.index.transaction() as conn:
            n, last = conn.execute(select(func.count(), func.max(notify_outbox.c.created_at))
                                   .where(notify_outbox.c.target_id == target_id,
                                          notify_outbox.c.job_id == job_id,
                                          notify_outbox.c.event == "job.progress")).one()
        return int(n), last

    def due(self, *, limit: int) -> list[OutboxRow]:
        """Pending rows whose time has come, oldest first."""
        query = (select(notify_outbox).where(notify_outbox.c.state == PENDING,
                                             notify_outbox.c.next_at <= self.index.clock())
                 .order_by(notify_outbox.c.next_at, notify_outbox.c.created_at).limit(limit))
        with self.index.transaction() as conn:
            return [OutboxRow(**r) for r in conn.execute(query).mappings()]

    def claim(self, row: OutboxRow, *, lease_s: float) -> bool:
        """Take the row for lease_s (its next_at moves on); False if another took it."""
        with self.index.transaction() as conn:
            return bool(conn.execute(
                update(notify_outbox).where(notify_outbox.c.id == row.id,
                                            notify_outbox.c.state == PENDING,
                                            notify_outbox.c.next_at == row.next_at)
                .values(next_at=self.index.clock() + lease_s)).rowcount)

    def settle(self, row: OutboxRow, *, ok: bool, status: int | None, error: str | None,
               ms: float | None, retry_at: float | None) -> None:
        """Record one attempt: delivered (ok), due again at retry_at, or failed for good."""
        now = self.index.clock()
        attempt = row.attempts + 1
        changes: dict[str, Any] = {"attempts": attempt, "last_error": error}
        if ok:
            changes.update(state=DELIVERED, finished_at=now)
        elif retry_at is None:
            changes.update(state=FAILED, finished_at=now)
        else:
            changes.update(next_at=retry_at)
        with self.index.transaction() as conn:
            conn.execute(update(notify_outbox).where(notify_outbox.c.id == row.id)
                         .values(**changes))
            conn.execute(insert(notify_log).values(
                outbox_id=row.id, target_id=row.target_id, job_id=row.job_id, event=row.event,
                at=now, attempt=attempt, ok=ok, status=status, error=error, ms=ms))

    def rows(self, *, job_id: str | None = None, target_ids: Sequence[str] | None = None
             ) -> list[OutboxRow]:
        query = select(notify_outbox).order_by(notify_outbox.c.created_at, notify_outbox.c.id)
        if job_id is not None:
            query = query.where(notify_outbox.c.job_id == job_id)
        if target_ids is not None:
            query = query.where(notify_outbox.c.target_id.in_(list(target_ids)))
        with self.index.transaction() as conn:
            return [OutboxRow(**r) for r in conn.execute(query).mappings()]

    def pending(self) -> int:
        with self.index.transaction() as conn:
            return int(conn.execute(select(func.count()).where(
                notify_outbox.c.state == PENDING)).scalar() or 0)

    def log(self, *, target_ids: Sequence[str] | None = None, job_id: str | None = None,
            limit: int = 100) -> list[Attempt]:
        """The latest attempts, oldest of them first."""
        query = select(notify_log).order_by(notify_log.c.id.desc()).limit(limit)
        if target_ids is not None:
            query = query.where(notify_log.c.target_id.in_(list(target_ids)))
        if job_id is not None:
            query = query.where(notify_log.c.job_id == job_id)
        with self.index.transaction() as conn:
            found = [Attempt(**{k: v for k, v in r.items() if k != "id"})
                     for r in conn.execute(query).mappings()]
        return found[::-1]
