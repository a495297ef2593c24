"""A job as the API shows it: its summary, rate and ETA from item timings, cost so far,
and whether it meets its deadline."""

from __future__ import annotations

from typing import Any

from gpufleet.api.queries import Timing
from gpufleet.domain import Job


def rate_and_eta(job: Job, timing: Timing) -> tuple[float | None, float | None]:
    """Items per second from the first start to the last finish; ETA for what is pending."""
    if (timing.finished < 2 or timing.first_started is None or timing.last_finished is None
            or timing.last_finished <= timing.first_started):
        return None, None
    rate = timing.finished / (timing.last_finished - timing.first_started)
    if job.state.finished or not job.counts.pending:
        return rate, None
    return rate, job.counts.pending / rate


def deadline_status(job: Job, timing: Timing, eta_s: float | None, *, now: float
                    ) -> str | None:
    """met or missed once finished; while running, missed (past it), at_risk (the ETA
    ends after it), on_track, or unknown (no rate yet to project from)."""
    if job.deadline_s is None:
        return None
    deadline_at = job.created_at + job.deadline_s
    if job.state.finished:
        ended_at = timing.last_finished if timing.last_finished is not None else now
        return "met" if ended_at <= deadline_at else "missed"
    if now > deadline_at:
        return "missed"
    if eta_s is None:
        return "unknown"
    return "at_risk" if now + eta_s > deadline_at else "on_track"


def job_view(job: Job, timing: Timing, *, now: float) -> dict[str, Any]:
    rate, eta = rate_and_eta(job, timing)
    usage = getattr(job, "usage", None)
    return {**job.summary(),
            "rate_per_s": None if rate is None else round(rate, 3),
            "eta_s": None if eta is None else round(eta, 1),
            "cost_so_far": None if usage is None else round(usage.cost, 6),
            "finished_at": timing.last_finished if job.state.finished else None,
            "deadline_at": None if job.deadline_s is None else job.created_at + job.deadline_s,
            "deadline": deadline_status(job, timing, eta, now=now)}
