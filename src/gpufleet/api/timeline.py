"""One tenant's work over time, in fixed buckets: items finished, backlog and cost.

Everything is counted from the index, over the tenant's own jobs only, so a
model shared with another tenant shows none of that tenant's work. Three
grouped queries answer any window (their rows grow with jobs x buckets, never
with items):

- throughput: the tenant's items that ended done or failed in each bucket;
- backlog at the end of a bucket: what is pending now, plus what ended after
  the bucket, minus the items of jobs created after it (a redrive, which
  makes failed items pending again, is not replayed: the curve is an
  estimate for those moments);
- cost: each job's cost so far (``index/usage.py``: its workers' time and
  price) spread over its finished items, so a bucket costs what the items it
  finished cost. Workers' idle and boot time is charged to the items they
  served, as the usage code does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Connection, Integer, cast, func, literal_column, select

from gpufleet.index.schema import items, jobs
from gpufleet.index.usage import job_usage

MAX_BUCKETS = 120  # points per series: enough for a chart, small enough to send often


@dataclass(frozen=True, slots=True)
class Bucket:
    at: float  # its start, in seconds since the epoch
    done: int
    failed: int
    backlog: int  # items pending at its end
    cost: float  # worker cost of the items it finished


def bucket_s_for(window_s: float) -> int:
    """A whole number of seconds per bucket that fits the window in MAX_BUCKETS."""
    return max(1, math.ceil(window_s / MAX_BUCKETS))


def series(conn: Connection, tenant: str, *, since: float, until: float,
           bucket_s: int) -> list[Bucket]:
    first, last = int(since // bucket_s), int(until // bucket_s)
    mine = select(jobs.c.id).where(jobs.c.tenant == tenant).scalar_subquery()
    # Integer seconds // integer: the same floor division on SQLite and PostgreSQL. The
    # bucket is written into the SQL (an int we computed), not bound: PostgreSQL takes a
    # GROUP BY expression as the SELECT's only if they are the same text.
    width = literal_column(str(int(bucket_s)), Integer)
    slot = cast(items.c.finished_at, Integer) // width
    ended: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    for job_id, at, status, n in conn.execute(
            select(items.c.job_id, slot, items.c.status, func.count())
            .where(items.c.job_id.in_(mine), items.c.status != "pending",
                   items.c.finished_at >= first * bucket_s)
            .group_by(items.c.job_id, slot, items.c.status)):
        ended[(job_id, int(at))][status] = n
    pending_now = conn.execute(select(func.count()).where(
        items.c.job_id.in_(mine), items.c.status == "pending")).scalar() or 0
    created: dict[int, int] = defaultdict(int)
    created_slot = cast(jobs.c.created_at, Integer) // width
    for at, total in conn.execute(
            select(created_slot, func.sum(jobs.c.total))
            .where(jobs.c.tenant == tenant, jobs.c.created_at >= first * bucket_s)
            .group_by(created_slot)):
        created[int(at)] += int(total or 0)
    cost_per_item = _cost_per_item(conn, sorted({job for job, _ in ended}))

    done: dict[int, int] = defaultdict(int)
    failed: dict[int, int] = defaultdict(int)
    gone: dict[int, int] = defaultdict(int)  # left the backlog: any outcome, cancelled too
    cost: dict[int, float] = defaultdict(float)
    for (job_id, at), by_status in ended.items():
        done[at] += by_status.get("done", 0)
        failed[at] += by_status.get("failed", 0)
        gone[at] += sum(by_status.values())
        cost[at] += cost_per_item.get(job_id, 0.0) * (
            by_status.get("done", 0) + by_status.get("failed", 0))
    buckets: list[Bucket] = []
    # Walk back from now: the backlog at the end of a bucket undoes what came after it.
    backlog = pending_now
    for at in range(last, first - 1, -1):
        buckets.append(Bucket(at=float(at * bucket_s), done=done[at], failed=failed[at],
                              backlog=max(0, backlog), cost=round(cost[at], 6)))
        backlog += gone[at] - created[at]
    buckets.reverse()
    return buckets


def _cost_per_item(conn: Connection, job_ids: list[str]) -> dict[str, float]:
    """Each job's cost so far over the items its workers finished (done or failed)."""
    if not job_ids:
        return {}
    usage = job_usage(conn, job_ids)
    finished: dict[str, int] = {job: int(n) for job, n in conn.execute(
        select(items.c.job_id, func.count())
        .where(items.c.job_id.in_(job_ids), items.c.status.in_(("done", "failed")))
        .group_by(items.c.job_id))}
    return {job: usage[job].cost / finished[job] for job in usage if finished.get(job)}
