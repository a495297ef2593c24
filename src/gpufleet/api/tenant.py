"""The index and the queues as one tenant sees them: the only way routes read data.

A route asks for a ``TenantView`` (through ``auth.viewer(scope)``), built from
the authenticated key; it never holds an unscoped reader. Every method that
names a job checks the job is the tenant's first, and answers JobNotFound
otherwise, exactly as for a job that does not exist. Operator actions that
span tenants (redriving another tenant's dead letters) are the CLI's.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from gpufleet.api.history import fleet_history
from gpufleet.api.queries import Owner, Reads, Timing
from gpufleet.domain import Item, Job
from gpufleet.export.rows import Row, read_batches
from gpufleet.index import Index
from gpufleet.index.repo import WorkerInfo
from gpufleet.index.schema import items, jobs, workers
from gpufleet.queue import DeadLetter, TaskQueue
from gpufleet.redrive import redrive


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead-lettered task of the tenant's: its queue's model, the job and item keys."""

    model: str
    letter: DeadLetter
    job: str | None
    keys: list[str]


def letter_body(letter: DeadLetter) -> tuple[str | None, list[str]]:
    """The job id and item keys a dead letter's task names (None, [] if unreadable)."""
    try:
        body = json.loads(letter.body)
        job, keys = body.get("job"), body.get("keys", [])
    except (ValueError, AttributeError, RecursionError):
        return None, []
    ok = isinstance(job, str) and isinstance(keys, list)
    return (job, [k for k in keys if isinstance(k, str)]) if ok else (None, [])


@dataclass(frozen=True, slots=True)
class OpenJob:
    """A job of the tenant's that is neither cancelled nor finished (an item is pending)."""

    id: str
    model: str
    total: int


class TenantView:
    def __init__(self, tenant: str, *, reads: Reads, index: Index,
                 queue: Callable[[str], AbstractContextManager[TaskQueue]],
                 key_id: str = "") -> None:
        self.tenant = tenant
        self.key_id = key_id  # the API key the view was made for ("" when made by the API)
        self._reads, self._index, self._queue = reads, index, queue

    # Jobs ------------------------------------------------------------------

    def owner(self, job_id: str) -> Owner:
        return self._reads.owner(self.tenant, job_id)

    def job(self, job_id: str) -> Job:
        self.owner(job_id)
        return self._index.job(job_id)

    def timing(self, job_id: str) -> Timing:
        self.owner(job_id)
        return self._reads.timing(job_id)

    def job_ids(self, *, before: str | None, limit: int) -> list[str]:
        return self._reads.job_ids(self.tenant, before=before, limit=limit)

    def open_jobs(self) -> list[OpenJob]:
        """One index seek per job of the tenant's (``ix_items_job_status``), no item scan."""
        pending = (select(items.c.job_id)
                   .where(items.c.job_id == jobs.c.id, items.c.status == "pending").exists())
        query = select(jobs.c.id, jobs.c.model, jobs.c.total).where(
            jobs.c.tenant == self.tenant, jobs.c.cancelled.is_(False), pending)
        with self._index.transaction() as conn:
            return [OpenJob(*row) for row in conn.execute(query)]

    def cancel(self, job_id: str) -> None:
        self.owner(job_id)
        self._index.cancel_job(job_id)

    # Items -----------------------------------------------------------------

    def item(self, job_id: str, key: str) -> Item | None:
        self.owner(job_id)
        return self._reads.item(job_id, key)

    def items(self, job_id: str, **filters: Any) -> list[Item]:
        self.owner(job_id)
        return self._reads.items(job_id, **filters)

    def export(self, job_id: str, *, shown: Callable[[str], str]) -> Iterator[list[Row]]:
        """The job's export rows in batches (export/rows.py); NotExportable if queued."""
        self.owner(job_id)
        return read_batches(self._index, job_id, shown=shown)

    def search(self, **query: Any) -> list[tuple[Item, float]]:
        return self._reads.search(self.tenant, **query)

    # Models, queues and the fleet -------------------------------------------

    def models(self) -> list[str]:
        """The model specs of the tenant's jobs (never another tenant's)."""
        with self._index.transaction() as conn:
            return list(conn.execute(select(jobs.c.model).distinct()
                                     .where(jobs.c.tenant == self.tenant)).scalars())

    def fleet(self) -> dict[str, Any]:
        """Per model of the tenant's: its open jobs and pending items; the workers serving
        those models, by state. Other tenants' specs and counts are not shown."""
        query = (select(jobs.c.model, func.count(func.distinct(jobs.c.id)), func.count())
                 .join(items, items.c.job_id == jobs.c.id)
                 .where(jobs.c.tenant == self.tenant, items.c.status == "pending",
                        jobs.c.cancelled.is_(False))
                 .group_by(jobs.c.model))
        with self._index.transaction() as conn:
            models = {model: {"jobs": n_jobs, "pending": n_items}
                      for model, n_jobs, n_items in conn.execute(query)}
        workers = Counter(w.state for w in self._index.live_workers()
                          if w.model in models)
        return {"workers": dict(workers), "models": models}

    def workers(self, *, seen_within_s: float) -> list[WorkerInfo]:
        """The workers of the tenant's models seen lately, stopped ones too (a worker that
        just ended is what an operator looks for), newest first. A worker serves one model
        spec, whoever submitted its jobs: those of specs only other tenants use are not
        shown."""
        models = self.models()
        if not models:
            return []
        query = (select(workers).where(workers.c.model.in_(models),
                                       workers.c.last_seen >= self.now() - seen_within_s)
                 .order_by(workers.c.started_at.desc(), workers.c.id))
        with self._index.transaction() as conn:
            return [WorkerInfo(**r) for r in conn.execute(query).mappings()]

    def history(self, *, window_s: float) -> dict[str, Any]:
        """The decisions on the tenant's models and its own work over the window
        (``history.py``: what of other tenants is taken out)."""
        return fleet_history(self._index, self._reads, self.tenant, self.models(),
                             window_s=window_s, now=self.now())

    def now(self) -> float:
        """The index's time: what workers and the controller stamp their rows with."""
        return self._index.clock()

    def dead_letters(self) -> list[Letter]:
        return [letter for letter, mine in self._letters() if mine]

    def redrive(self) -> tuple[list[Letter], list[str]]:
        """Put the tenant's dead letters back on their queues: those moved, and the models
        whose queues were left alone because they hold other tenants' dead letters too
        (a queue redrives all of its letters at once: that is an operator's action)."""
        by_model: dict[str, list[tuple[Letter, bool]]] = {}
        for letter, mine in self._letters():
            by_model.setdefault(letter.model, []).append((letter, mine))
        moved: list[Letter] = []
        shared: list[str] = []
        for model, letters in by_model.items():
            if not any(mine for _, mine in letters):
                continue
            if not all(mine for _, mine in letters):
                shared.append(model)
                continue
            with self._queue(model) as queue:
                redrive(queue, self._index)  # their items pending again: the job runs again
            moved += [letter for letter, _ in letters]
        return moved, shared

    def _letters(self) -> list[tuple[Letter, bool]]:
        """Every dead letter on the queues of the tenant's models, and whether it is its."""
        found: list[tuple[Letter, bool]] = []
        for model in self.models():
            with self._queue(model) as queue:
                letters = [Letter(model, d, *letter_body(d)) for d in queue.dead_letters()]
            own = self._reads.tenant_jobs(self.tenant, [lt.job for lt in letters if lt.job])
            found += [(lt, lt.job in own) for lt in letters]
        return found
