"""The controller's metrics are its last tick, as the policy saw it; reasons have bounded kinds."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.autoscale.controller import Controller, Estimates
from gpufleet.autoscale.metrics import ControllerMetrics, reason_kind
from gpufleet.autoscale.policy import FleetView, JobBacklog, PolicyConfig, WorkerView, decide
from gpufleet.autoscale.providers.local import LocalProvider
from gpufleet.config import Settings
from gpufleet.domain import Capacity, WorkerState
from gpufleet.index import Index
from gpufleet.index.fleet_records import FleetRecords
from gpufleet.jobs import JobRequest, create_job
from gpufleet.models.base import canonical_spec

MODEL = canonical_spec("synthetic?item_ms=10")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"GPUFLEET_HOME": str(tmp_path / "home")})


def test_a_tick_shows_backlog_deadlines_and_cost_and_an_ended_job_leaves(
        settings: Settings) -> None:
    # Given a job of 50 items due in an hour, a worker row that cost something, and a
    # controller allowed no workers (so it starts none, and the job is predicted late)
    index = Index(settings.db)
    job = create_job(settings, index, JobRequest(items=[f"k{i}" for i in range(50)],
                                                 model=MODEL, deadline_s=3600,
                                                 input=settings.input)).id
    index.worker_seen("w1", host="h", pid=1, model=MODEL, state="ready", bootstrap_s=60.0,
                      extra={"busy_s": 1740.0, "idle_s": 0.0, "price_per_h": 0.5})
    config = PolicyConfig(max_workers=0)
    metrics = ControllerMetrics(model=MODEL, config=config, records=FleetRecords(index))
    ctl = Controller(settings, index, LocalProvider.for_pool(settings, model=MODEL),
                     model=MODEL, config=config, estimates=Estimates(), on_tick=metrics)
    value = metrics.registry.get_sample_value
    m = {"model": "synthetic"}  # the name, not the spec with its parameters
    try:
        # When it ticks
        ctl.tick()
        # Then the metrics are what it saw and decided
        assert value("gpufleet_controller_backlog_items", m) == 50
        assert value("gpufleet_controller_workers_desired", m) == 0
        assert value("gpufleet_controller_workers", {**m, "state": "busy",
                                                     "capacity": "spot"}) == 0
        assert 0 <= (value("gpufleet_controller_oldest_job_age_seconds", m) or -1) < 60
        assert value("gpufleet_controller_decisions_total", {**m, "reason": "late"}) == 1
        assert value("gpufleet_controller_job_late", {**m, "job": job}) == 1
        assert value("gpufleet_controller_job_finish_seconds", {**m, "job": job}) == float("inf")
        deadline = value("gpufleet_controller_job_deadline_seconds", {**m, "job": job})
        assert deadline is not None and 3500 < deadline <= 3600
        # 30 minutes at 0.50 an hour
        assert value("gpufleet_controller_cost_dollars", m) == pytest.approx(0.25)
        # When the job ends (cancelled) and the controller ticks again
        index.cancel_job(job)
        ctl.tick()
        # Then its series are gone, and the counters only went up
        assert value("gpufleet_controller_job_late", {**m, "job": job}) is None
        assert value("gpufleet_controller_job_deadline_seconds", {**m, "job": job}) is None
        # (the cancelled job's tasks are still queued: the controller sees them as backlog)
        assert (value("gpufleet_controller_decisions_total", {**m, "reason": "late"}) or 0) >= 1
    finally:
        ctl.close()
        index.close()


def _worker(id: str, state: WorkerState, *, idle_since: float | None = None,
            started_at: float = 0.0) -> WorkerView:
    return WorkerView(id=id, state=state, capacity=Capacity.SPOT, started_at=started_at,
                      idle_since=idle_since)


@pytest.mark.parametrize(("workers", "jobs", "config", "kinds"), [
    ((), (JobBacklog(id="j", items=100_000, created_at=1000.0),), PolicyConfig(),
     {"start_deadlines"}),
    ((), (JobBacklog(id="j", items=10**8, created_at=1000.0, deadline=1100.0),),
     PolicyConfig(max_workers=3), {"start_best_effort", "late"}),
    ((), (), PolicyConfig(min_workers=2), {"start_warm_pool"}),
    ((_worker("a", WorkerState.READY, idle_since=0.0),), (), PolicyConfig(), {"drain_idle"}),
    ((_worker("a", WorkerState.BUSY), _worker("b", WorkerState.BUSY)), (),
     PolicyConfig(max_workers=1), {"drain_over_max"}),
    ((_worker("a", WorkerState.READY), _worker("b", WorkerState.BOOTING, started_at=1000.0)),
     (JobBacklog(id="j", items=1, created_at=1000.0),),
     PolicyConfig(), {"drain_booting"}),
    ((), (JobBacklog(id="j", items=10, created_at=1000.0),),
     PolicyConfig(spot=True, on_demand_fallback=False),
     {"start_deadlines", "cannot_start", "late"}),
    ((_worker("a", WorkerState.BUSY),), (), PolicyConfig(), {"hold"}),
])
def test_every_reason_the_policy_gives_has_a_kind(
        workers: tuple[WorkerView, ...], jobs: tuple[JobBacklog, ...], config: PolicyConfig,
        kinds: set[str]) -> None:
    view = FleetView(jobs=jobs, workers=workers, item_s=0.01, bootstrap_s=300.0,
                     spot_available=not (config.spot and not config.on_demand_fallback))
    decision = decide(view, config, now=1000.0)
    found = {reason_kind(r) for r in decision.reasons} - {None}
    assert found == kinds, decision.reasons


def test_before_the_first_tick_only_the_cost_is_shown(settings: Settings) -> None:
    index = Index(settings.db)
    try:
        metrics = ControllerMetrics(model=MODEL, config=PolicyConfig(),
                                    records=FleetRecords(index))
        names = {m.name for m in metrics.registry.collect() if m.samples}
        assert "gpufleet_controller_cost_dollars" in names
        assert "gpufleet_controller_backlog_items" not in names
    finally:
        index.close()
