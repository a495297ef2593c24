"""Item counts by status for ``/metrics``, without counting every item row on each scrape.

A job with no pending item is settled: its counts are kept and not counted
again. Each refresh (at most every ``refresh_s``, by whichever scrape comes
first; the others are answered with the last counts) counts only the open
jobs' items, by ``ix_items_job_status``, and lists the job ids to notice new
and deleted jobs. A settled job's counts can still change (a redrive turns
failed into done), so every ``settle_s`` everything is counted afresh.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from sqlalchemy import func, select

from gpufleet.index import Index
from gpufleet.index.schema import items, jobs


class ItemCounts:
    def __init__(self, index: Index, *, refresh_s: float = 10.0, settle_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._index, self._refresh_s, self._settle_s, self._clock = (
            index, refresh_s, settle_s, clock)
        self._settled: dict[str, Counter[str]] = {}  # job id -> counts of a settled job
        self._open: dict[str, Counter[str]] = {}
        self._totals: Counter[str] = Counter()
        self._fresh_until = self._resettle_at = -1.0
        self._lock = threading.Lock()  # one refresh at a time; others read the last totals
        self.rows_counted = 0  # item rows the last refresh counted (for tests and curiosity)

    def totals(self) -> dict[str, int]:
        if self._clock() >= self._fresh_until and self._lock.acquire(blocking=False):
            try:
                self._refresh()
            finally:
                self._lock.release()
        return dict(self._totals)

    def _refresh(self) -> None:
        now = self._clock()
        if now >= self._resettle_at:
            self._settled.clear()
            self._resettle_at = now + self._settle_s
        with self._index.transaction() as conn:
            ids = set(conn.execute(select(jobs.c.id)).scalars())
            for gone in set(self._settled) - ids:
                del self._settled[gone]
            unsettled = sorted(ids - set(self._settled))
            counts: dict[str, Counter[str]] = {job: Counter() for job in unsettled}
            for start in range(0, len(unsettled), 500):  # bound the IN list
                chunk = unsettled[start:start + 500]
                for job, status, n in conn.execute(
                        select(items.c.job_id, items.c.status, func.count())
                        .where(items.c.job_id.in_(chunk))
                        .group_by(items.c.job_id, items.c.status)):
                    counts[job][status] = n
        self.rows_counted = sum(sum(c.values()) for c in counts.values())
        self._open = {}
        for job, c in counts.items():
            (self._open if c["pending"] else self._settled)[job] = c
        totals: Counter[str] = Counter()
        for c in (*self._settled.values(), *self._open.values()):
            totals.update(c)
        self._totals = totals
        self._fresh_until = self._clock() + self._refresh_s
