"""The fluid model the policy reasons with: a worker ready at r has done (t - r) s of work by t.

Work is in worker-seconds (items x service time per item); times are seconds
from now. Pure arithmetic, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Target", "finish_time", "new_needed", "work_by", "worthwhile"]

EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Target:
    job: str
    deadline_in: float  # seconds from now to the job's deadline
    due_in: float  # the same, less the reserve kept for jitter
    work_s: float  # worker-seconds of this job and of every job due before it


def finish_time(ready_in: list[float], work_s: float) -> float:
    """Seconds until workers ready after ``ready_in`` s have done ``work_s`` (inf: no workers)."""
    if work_s <= 0:
        return 0.0
    times = sorted(max(0.0, r) for r in ready_in)
    rate, t, remaining = 0, 0.0, work_s
    for i, r in enumerate(times):
        # Between t and r, `rate` workers are working.
        if rate and remaining <= rate * (r - t):
            return t + remaining / rate
        remaining -= rate * (r - t)
        t, rate = r, i + 1
    return t + remaining / rate if rate else math.inf


def work_by(ready_in: list[float], t: float) -> float:
    """Worker-seconds done by time t."""
    return sum(max(0.0, t - r) for r in ready_in)


def new_needed(existing: list[float], targets: list[Target], bootstrap_s: float,
               room: int) -> int | None:
    """Least number of new workers (ready after bootstrap_s) that meets every target.

    None when no number up to ``room`` does (EDF over cumulative work: target k
    is met when the work of jobs 1..k is done by its due time).
    """
    needed = 0
    for tg in targets:
        deficit = tg.work_s - work_by(existing, tg.due_in)
        if deficit <= EPS:
            continue
        if tg.due_in <= bootstrap_s:
            return None
        needed = max(needed, math.ceil(deficit / (tg.due_in - bootstrap_s) - EPS))
    return needed if needed <= room else None


def worthwhile(existing: list[float], work_s: float, bootstrap_s: float, room: int) -> int:
    """Most new workers (up to room) such that each would work at least as long as it boots.

    Used when a deadline cannot be met: finish as early as possible, but not by
    starting workers that would mostly boot.
    """
    def ok(m: int) -> bool:
        end = finish_time(existing + [bootstrap_s] * m, work_s)
        return end - bootstrap_s >= max(bootstrap_s, EPS)

    lo, hi = 0, room  # ok(lo) is assumed (0 new workers is always allowed)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
