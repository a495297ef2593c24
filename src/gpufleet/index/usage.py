"""What each job cost: worker-seconds (booting, busy, idle) and their price, from the index.

Every worker reports, in its row of the workers table, its bootstrap time and
the seconds it spent busy and idle so far, the items it processed, its
capacity type and its price per hour. A job is charged, on every worker that
processed its items, that worker's time in proportion to the share of the
worker's items that were the job's: all items of one pool cost the same, so
busy time splits fairly, and booting and idle time (the overhead of having the
worker at all) are shared the same way. A worker that processed nothing is
fleet overhead, charged to no job.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, func, select

from gpufleet.domain import JobUsage
from gpufleet.index.schema import items, workers


def job_usage(conn: Connection, job_ids: list[str] | None) -> dict[str, JobUsage]:
    """Usage of the given jobs (every job when None); jobs no worker touched are left out."""
    query = (select(items.c.job_id, items.c.worker, func.count())
             .where(items.c.worker.is_not(None))
             .group_by(items.c.job_id, items.c.worker))
    if job_ids is not None:
        query = query.where(items.c.job_id.in_(job_ids))
    per_job: dict[str, dict[str, int]] = defaultdict(dict)
    for job_id, worker, n in conn.execute(query):
        per_job[job_id][worker] = n
    worker_ids = sorted({w for counts in per_job.values() for w in counts})
    if not worker_ids:
        return {}
    rows = {r["id"]: r for r in conn.execute(
        select(workers).where(workers.c.id.in_(worker_ids))).mappings()}
    return {job_id: _charge(counts, rows) for job_id, counts in per_job.items()}


def worker_seconds(row: Any) -> tuple[float, float, float]:
    """A worker row's booting, busy and idle seconds so far (still booting: since it started)."""
    boot = row["bootstrap_s"]
    if boot is None and row["state"] == "booting":
        boot = row["last_seen"] - row["started_at"]
    return boot or 0.0, row["busy_s"] or 0.0, row["idle_s"] or 0.0


def _charge(counts: dict[str, int], rows: dict[str, Any]) -> JobUsage:
    booting = busy = idle = cost = 0.0
    for worker_id, n in counts.items():
        row = rows.get(worker_id)
        if row is None:
            continue
        share = min(1.0, n / max(row["items"] or 0, n))
        b, u, i = (share * s for s in worker_seconds(row))
        booting, busy, idle = booting + b, busy + u, idle + i
        cost += (b + u + i) * (row["price_per_h"] or 0.0) / 3600
    return JobUsage(booting_s=booting, busy_s=busy, idle_s=idle, cost=cost)
