"""A job as the API shows it: its summary, rate and ETA from item timings, cost so far."""

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


def job_view(job: Job, timing: Timing) -> dict[str, Any]:
    rate, eta = rate_and_eta(job, timing)
    usage = getattr(job, "usage", None)
    return {**job.summary(),
            "rate_per_s": None if rate is None else round(rate, 3),
            "eta_s": None if eta is None else round(eta, 1),
            "cost_so_far": None if usage is None else round(usage.cost, 6)}
