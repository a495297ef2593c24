"""A job's rate and ETA, from its items' start and finish times."""

from __future__ import annotations

from gpufleet.api.queries import Timing
from gpufleet.api.views import job_view, rate_and_eta
from gpufleet.domain import Counts, Job


def _job(done: int, failed: int, total: int = 100, cancelled: bool = False,
         deadline_s: float | None = None) -> Job:
    return Job(id="j", model="m", input="file:///i/", output="file:///o/",
               counts=Counts(total=total, done=done, failed=failed), created_at=0.0,
               cancelled=cancelled, deadline_s=deadline_s)


def test_a_running_job_has_a_rate_and_an_eta_for_what_is_pending() -> None:
    # Given 40 of 100 items finished in the 20 s since the first started
    job, timing = _job(38, 2), Timing(finished=40, first_started=100.0, last_finished=120.0)
    # Then the rate is 2 items/s and the 60 pending items take 30 s more
    assert rate_and_eta(job, timing) == (2.0, 30.0)
    view = job_view(job, timing, now=121.0)
    assert (view["rate_per_s"], view["eta_s"], view["state"]) == (2.0, 30.0, "running")


def test_no_rate_before_two_items_and_no_eta_once_finished_or_cancelled() -> None:
    assert rate_and_eta(_job(0, 0), Timing(0, None, None)) == (None, None)
    assert rate_and_eta(_job(1, 0), Timing(1, 5.0, 6.0)) == (None, None)
    assert rate_and_eta(_job(100, 0), Timing(100, 0.0, 50.0)) == (2.0, None)
    assert rate_and_eta(_job(10, 0, cancelled=True), Timing(10, 0.0, 5.0)) == (2.0, None)


def test_a_deadline_is_on_track_at_risk_missed_or_met() -> None:
    # Given a job due 200 s after it was created, half done at 2 items/s
    running = Timing(finished=50, first_started=0.0, last_finished=25.0)

    def status(job: Job, timing: Timing, now: float) -> str | None:
        return job_view(job, timing, now=now)["deadline"]

    # Then the 50 items left (25 s) finish in time at 100 s, not at 190 s, nor after 200 s
    assert status(_job(50, 0, deadline_s=200), running, 100.0) == "on_track"
    assert status(_job(50, 0, deadline_s=200), running, 190.0) == "at_risk"
    assert status(_job(50, 0, deadline_s=200), running, 201.0) == "missed"
    # And without a rate yet it cannot say; once finished it was met or missed
    assert status(_job(0, 0, deadline_s=200), Timing(0, None, None), 10.0) == "unknown"
    assert status(_job(100, 0, deadline_s=200), Timing(100, 0.0, 150.0), 999.0) == "met"
    assert status(_job(100, 0, deadline_s=200), Timing(100, 0.0, 250.0), 999.0) == "missed"
    view = job_view(_job(100, 0, deadline_s=200), Timing(100, 0.0, 150.0), now=999.0)
    assert (view["deadline_at"], view["finished_at"]) == (200.0, 150.0)
    assert status(_job(100, 0), Timing(100, 0.0, 150.0), 999.0) is None
