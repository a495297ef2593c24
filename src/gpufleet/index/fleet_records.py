"""What the fleet keeps in the index: inbox manifests, decisions, and what it measures.

Everything the controller needs to decide is read from here and from the
provider on every tick, so a controller that is killed and started again
decides the same thing.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from gpufleet.index.repo import Index
from gpufleet.index.schema import decisions, items, jobs, manifests, workers
from gpufleet.index.usage import worker_seconds

_KEEP_DECISIONS = 200


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    state: str  # accepted, refused
    job_id: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class OpenJob:
    id: str
    pending: int  # items queued or in flight
    created_at: float
    deadline_s: float | None
    priority: int


def manifest_id(inbox: str, key: str, version: str) -> str:
    return hashlib.sha256(f"{inbox}\0{key}\0{version}".encode()).hexdigest()


class FleetRecords:
    def __init__(self, index: Index) -> None:
        self.index = index

    # Inbox manifests ---------------------------------------------------------

    def manifest(self, inbox: str, key: str, version: str) -> ManifestRecord | None:
        with self.index.transaction() as conn:
            row = conn.execute(select(manifests).where(
                manifests.c.id == manifest_id(inbox, key, version))).mappings().first()
        return None if row is None else ManifestRecord(row["state"], row["job_id"],
                                                       row["reason"])

    def record_manifest(self, inbox: str, key: str, version: str, *, state: str,
                        job_id: str | None = None, reason: str | None = None) -> None:
        row = {"id": manifest_id(inbox, key, version), "inbox": inbox, "key": key,
               "version": version, "state": state, "job_id": job_id, "reason": reason,
               "seen_at": self.index.clock()}
        ins = self.index._insert(manifests).values(**row)
        with self.index.transaction() as conn:
            conn.execute(ins.on_conflict_do_nothing(index_elements=[manifests.c.id]))

    def manifests(self, inbox: str | None = None) -> list[dict[str, Any]]:
        query = select(manifests).order_by(manifests.c.seen_at)
        if inbox is not None:
            query = query.where(manifests.c.inbox == inbox)
        with self.index.transaction() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # Decisions ---------------------------------------------------------------

    def record_decision(self, model: str, desired: int, doc: dict[str, Any]) -> None:
        """Append a decision, or refresh the last one if it acted the same (a hold, say)."""
        now = self.index.clock()
        key = {k: doc.get(k) for k in ("start", "drain", "late")}
        with self.index.transaction() as conn:
            last = conn.execute(select(decisions.c.id, decisions.c.doc, decisions.c.desired)
                                .where(decisions.c.model == model)
                                .order_by(decisions.c.id.desc()).limit(1)).first()
            if last is not None and last.desired == desired and \
                    {k: json.loads(last.doc).get(k) for k in key} == key:
                conn.execute(update(decisions).where(decisions.c.id == last.id)
                             .values(at=now, doc=json.dumps(doc)))
                return
            conn.execute(insert(decisions).values(model=model, at=now, desired=desired,
                                                  doc=json.dumps(doc)))
            oldest_kept = conn.execute(
                select(decisions.c.id).where(decisions.c.model == model)
                .order_by(decisions.c.id.desc()).offset(_KEEP_DECISIONS).limit(1)).scalar()
            if oldest_kept is not None:
                conn.execute(delete(decisions).where(decisions.c.model == model,
                                                     decisions.c.id <= oldest_kept))

    def decisions(self, model: str | None = None, *, limit: int = 10) -> list[dict[str, Any]]:
        """The latest decisions, newest first, each {"model", "at", "desired", ...doc}."""
        query = select(decisions).order_by(decisions.c.id.desc()).limit(limit)
        if model is not None:
            query = query.where(decisions.c.model == model)
        with self.index.transaction() as conn:
            rows = list(conn.execute(query).mappings())
        return [{"model": r["model"], "at": r["at"], "desired": r["desired"],
                 **json.loads(r["doc"])} for r in rows]

    # What the controller measures ---------------------------------------------

    def open_jobs(self, model: str) -> list[OpenJob]:
        """Jobs of this model with items not yet done or failed, oldest first."""
        pending = (select(items.c.job_id, func.count().label("n"))
                   .where(items.c.status == "pending")
                   .where(items.c.job_id.in_(select(jobs.c.id).where(
                       jobs.c.model == model, jobs.c.cancelled.is_(False))))
                   .group_by(items.c.job_id).subquery())
        query = (select(jobs.c.id, jobs.c.created_at, jobs.c.deadline_s, jobs.c.priority,
                        pending.c.n).join(pending, pending.c.job_id == jobs.c.id)
                 .order_by(jobs.c.created_at, jobs.c.id))
        with self.index.transaction() as conn:
            return [OpenJob(r.id, r.n, r.created_at, r.deadline_s, r.priority or 0)
                    for r in conn.execute(query)]

    def workers(self, model: str, *, instances: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The registry rows of each of these instances (one per GPU pipeline), oldest first."""
        if not instances:
            return {}
        query = (select(workers).where(workers.c.model == model,
                                       workers.c.instance.in_(instances))
                 .order_by(workers.c.last_seen))
        found: dict[str, list[dict[str, Any]]] = {}
        with self.index.transaction() as conn:
            for r in conn.execute(query).mappings():
                found.setdefault(r["instance"], []).append(dict(r))
        return found

    def gpus_per_machine(self, model: str) -> int | None:
        """GPU pipelines per machine, as this model's latest worker reported (``--gpus``)."""
        query = (select(workers.c.gpus).where(workers.c.model == model)
                 .order_by(workers.c.last_seen.desc()).limit(1))
        with self.index.transaction() as conn:
            return conn.execute(query).scalar()

    def service_time_s(self, model: str, *, min_items: int = 50, recent: int = 20
                       ) -> float | None:
        """Busy seconds per item per worker (one GPU's pipeline), over the latest workers
        that did enough work."""
        done = workers.c["items"]  # not .items: that is the column collection's method
        query = (select(workers.c.busy_s, done)
                 .where(workers.c.model == model, done >= min_items, workers.c.busy_s > 0)
                 .order_by(workers.c.last_seen.desc()).limit(recent))
        with self.index.transaction() as conn:
            rows = [(float(busy), int(n)) for busy, n in conn.execute(query)]
        if not rows:
            return None
        return sum(busy for busy, _ in rows) / sum(n for _, n in rows)

    def bootstrap_s(self, model: str, *, recent: int = 10) -> float | None:
        """The median bootstrap time of the latest workers of this model."""
        query = (select(workers.c.bootstrap_s)
                 .where(workers.c.model == model, workers.c.bootstrap_s.is_not(None))
                 .order_by(workers.c.started_at.desc()).limit(recent))
        with self.index.transaction() as conn:
            values = [float(v) for v in conn.execute(query).scalars()]
        return statistics.median(values) if values else None

    def cost(self, model: str) -> float:
        """What this model's workers have cost so far, every second of them (booting, busy,
        idle) at its price: jobs' costs (usage.py) plus the fleet's overhead."""
        with self.index.transaction() as conn:
            rows = list(conn.execute(select(workers).where(workers.c.model == model)).mappings())
        return sum(sum(worker_seconds(r)) * (r["price_per_h"] or 0.0) / 3600 for r in rows)

    def interruptions(self, model: str, *, since: float) -> int:
        """Workers of this model reclaimed (a spot notice) since then."""
        query = select(func.count()).where(workers.c.model == model,
                                           workers.c.state == "interrupted",
                                           workers.c.last_seen >= since)
        with self.index.transaction() as conn:
            return int(conn.execute(query).scalar() or 0)
