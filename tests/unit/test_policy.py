"""The scaling policy: one pure function, checked by its properties over generated fleets."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufleet.autoscale.fluid import finish_time, work_by
from gpufleet.autoscale.plan import plan
from gpufleet.autoscale.policy import (
    Decision,
    FleetView,
    JobBacklog,
    PolicyConfig,
    WorkerView,
    decide,
)
from gpufleet.domain import Capacity, WorkerState
from gpufleet.errors import ConfigError

NOW = 100_000.0
TOL = 1e-6


@st.composite
def workers(draw: st.DrawFn) -> tuple[WorkerView, ...]:
    out = []
    for i in range(draw(st.integers(0, 12))):
        state = draw(st.sampled_from(list(WorkerState)))
        started = NOW - draw(st.floats(0, 2000))
        out.append(WorkerView(
            id=f"w{i}", state=state, capacity=draw(st.sampled_from(list(Capacity))),
            started_at=started,
            boot_remaining_s=draw(st.none() | st.floats(0, 900))
            if state is WorkerState.BOOTING else None,
            idle_since=NOW - draw(st.floats(0, 900)) if state is WorkerState.READY else None))
    return tuple(out)


@st.composite
def jobs(draw: st.DrawFn) -> tuple[JobBacklog, ...]:
    return tuple(JobBacklog(
        id=f"j{i}", items=draw(st.integers(0, 3_000_000)),
        created_at=NOW - draw(st.floats(0, 3600)),
        deadline=draw(st.none() | st.floats(NOW - 600, NOW + 4 * 3600)),
        priority=draw(st.integers(0, 3))) for i in range(draw(st.integers(0, 4))))


@st.composite
def views(draw: st.DrawFn) -> FleetView:
    return FleetView(jobs=draw(jobs()), workers=draw(workers()),
                     item_s=draw(st.floats(0.001, 0.1)), bootstrap_s=draw(st.floats(0, 900)),
                     spot_available=draw(st.booleans()))


@st.composite
def configs(draw: st.DrawFn) -> PolicyConfig:
    low = draw(st.integers(0, 4))
    return PolicyConfig(min_workers=low, max_workers=draw(st.integers(low, 60)),
                        cooldown_s=draw(st.floats(0, 600)),
                        deadline_margin=draw(st.floats(0, 0.2)),
                        spot=draw(st.booleans()), on_demand_fallback=draw(st.booleans()))


def ready_in(w: WorkerView, view: FleetView) -> float:
    if w.state is not WorkerState.BOOTING:
        return 0.0
    if w.boot_remaining_s is not None:
        return w.boot_remaining_s
    return max(0.0, view.bootstrap_s - (NOW - w.started_at))


def kept(view: FleetView, d: Decision) -> list[WorkerView]:
    return [w for w in view.workers if w.state is not WorkerState.DRAINING
            and w.id not in d.drain]


def targets(view: FleetView, config: PolicyConfig) -> list[tuple[float, float, float]]:
    """(due with margin, deadline, cumulative work) per job with work, earliest first."""
    live = [j for j in view.jobs if j.items > 0]
    due = {j.id: j.deadline if j.deadline is not None else j.created_at + config.target_drain_s
           for j in live}
    live.sort(key=lambda j: (due[j.id], -j.priority, j.id))
    out, work = [], 0.0
    for j in live:
        work += j.items * view.item_s
        left = due[j.id] - NOW
        out.append((left - config.deadline_margin * max(0.0, left), left, work))
    return out


def warm_top_up(view: FleetView, config: PolicyConfig, d: Decision) -> int:
    return max(0, config.min_workers - len(kept(view, d)))


SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(views(), configs())
def test_never_above_max_workers(view: FleetView, config: PolicyConfig) -> None:
    # Given any fleet and backlog / When the policy decides
    d = decide(view, config, NOW)
    # Then the fleet it asks for never exceeds max_workers
    assert d.desired <= config.max_workers
    assert d.desired == len(kept(view, d)) + len(d.start)


@SETTINGS
@given(views(), configs())
def test_never_below_min_workers_while_there_is_work(view: FleetView,
                                                     config: PolicyConfig) -> None:
    d = decide(view, config, NOW)
    can_start = not (config.spot and not view.spot_available and not config.on_demand_fallback)
    if view.backlog and can_start:
        assert d.desired >= config.min_workers


@SETTINGS
@given(views(), configs())
def test_never_starts_a_worker_that_would_be_ready_after_the_backlog_is_gone(
        view: FleetView, config: PolicyConfig) -> None:
    d = decide(view, config, NOW)
    if len(d.start) > warm_top_up(view, config, d):
        # Every new worker boots for bootstrap_s; the backlog must outlast that.
        assert d.finish_at is not None
        assert d.finish_at - NOW > view.bootstrap_s - TOL


@SETTINGS
@given(views(), configs())
def test_scale_in_only_drains_idle_or_useless_workers(view: FleetView,
                                                      config: PolicyConfig) -> None:
    d = decide(view, config, NOW)
    by_id = {w.id: w for w in view.workers}
    drained = [by_id[i] for i in d.drain]
    active = [w for w in view.workers if w.state is not WorkerState.DRAINING]
    assert all(w.state is not WorkerState.DRAINING for w in drained)  # asked once
    if len(active) <= config.max_workers:
        # Busy workers are never asked to stop; idle ones only after the cool-down.
        for w in drained:
            assert w.state in (WorkerState.READY, WorkerState.BOOTING)
            if w.state is WorkerState.READY:
                assert w.idle_since is not None
                assert NOW - w.idle_since >= config.cooldown_s
        # Draining a ready worker while starting a new one would waste a bootstrap.
        assert not (d.start and any(w.state is WorkerState.READY for w in drained))
    else:
        # Over the cap: idle first, then booting, and a busy one only when none is left.
        if any(w.state is WorkerState.BUSY for w in drained):
            assert all(w.state is WorkerState.BUSY for w in kept(view, d))
    assert len(kept(view, d)) >= min(config.min_workers, len(active))


@SETTINGS
@given(workers(), configs(), st.floats(0.001, 0.1), st.floats(0, 900))
def test_an_empty_queue_goes_to_min_workers_after_the_cool_down(
        fleet: tuple[WorkerView, ...], config: PolicyConfig, item_s: float,
        bootstrap_s: float) -> None:
    # Given no backlog and workers that are idle past the cool-down, booting or leaving
    idle = tuple(WorkerView(id=w.id, state=w.state, capacity=w.capacity,
                            started_at=w.started_at, boot_remaining_s=w.boot_remaining_s,
                            idle_since=NOW - config.cooldown_s - 1)
                 if w.state in (WorkerState.READY, WorkerState.BUSY) else w for w in fleet)
    idle = tuple(WorkerView(id=w.id, state=WorkerState.READY, capacity=w.capacity,
                            started_at=w.started_at, idle_since=w.idle_since)
                 if w.state is WorkerState.BUSY else w for w in idle)
    view = FleetView(jobs=(JobBacklog(id="done", items=0, created_at=NOW),), workers=idle,
                     item_s=item_s, bootstrap_s=bootstrap_s)
    # When the policy decides
    d = decide(view, config, NOW)
    # Then the fleet shrinks to the warm pool (zero by default)
    can_start = not (config.spot and not view.spot_available and not config.on_demand_fallback)
    if can_start:
        assert d.desired == config.min_workers


@SETTINGS
@given(views(), configs())
def test_the_least_fleet_that_meets_every_deadline_is_chosen(view: FleetView,
                                                            config: PolicyConfig) -> None:
    d = decide(view, config, NOW)
    can_start = not (config.spot and not view.spot_available and not config.on_demand_fallback)
    if not can_start:
        assert d.start == ()
        return
    base = [ready_in(w, view) for w in kept(view, d)]
    room = config.max_workers - len(base)
    goals = targets(view, config)

    def meets(m: int) -> bool:
        fleet = base + [view.bootstrap_s] * m
        return all(work_by(fleet, due) >= work - TOL * max(1.0, work) for due, _, work in goals)

    least = next((m for m in range(room + 1) if meets(m)), None)
    if least is None:
        return  # infeasible: covered by the next test
    # Then exactly that many start (or the warm pool's top-up, if larger)...
    assert len(d.start) == max(least, warm_top_up(view, config, d))
    # ...and, in the fluid model, every job finishes by its deadline.
    fleet = base + [view.bootstrap_s] * len(d.start)
    for _, deadline, work in goals:
        assert finish_time(fleet, work) <= deadline + TOL * max(1.0, deadline)
    assert d.late == ()


def test_a_late_job_gets_only_workers_that_would_work_as_long_as_they_boot() -> None:
    # Given three busy workers, 92 k items left and a deadline they cannot quite make
    view = FleetView(jobs=(JobBacklog(id="late", items=92_346, created_at=NOW - 1500,
                                      deadline=NOW + 270),),
                     workers=tuple(WorkerView(id=f"w{i}", state=WorkerState.BUSY,
                                              capacity=Capacity.SPOT, started_at=NOW - 1500)
                                   for i in range(3)),
                     item_s=0.01, bootstrap_s=300)
    # When the policy decides
    d = decide(view, PolicyConfig(max_workers=100), NOW)
    # Then it does not start 97 workers that would each work a few seconds
    assert d.start == ()
    assert d.late == ("late",)


def test_a_late_big_job_grows_the_fleet_but_not_to_the_cap() -> None:
    # Given a deadline sooner than any new worker can boot
    view = FleetView(jobs=(JobBacklog(id="big", items=5_000_000, created_at=NOW,
                                      deadline=NOW + 200),),
                     workers=(), item_s=0.01, bootstrap_s=300)
    d = decide(view, PolicyConfig(max_workers=1000), NOW)
    # 50 000 worker-seconds; each new worker must work at least its 300 s bootstrap.
    assert len(d.start) == 166
    assert d.finish_at is not None and d.finish_at - NOW >= 600
    assert any("cannot all be met" in r for r in d.reasons)
    assert d.late == ("big",)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 50_000_000), st.floats(0.1, 100), st.floats(0, 1800),
       st.floats(1, 6 * 3600))
def test_plan_matches_the_analytical_fleet(items: int, item_ms: float, bootstrap_s: float,
                                           extra_s: float) -> None:
    # Given a batch and a deadline longer than the bootstrap
    deadline_s = bootstrap_s + extra_s
    least = math.ceil(items * item_ms / 1000 / (deadline_s - bootstrap_s) - 1e-9)
    if least > 100_000:
        return
    # When planned
    p = plan(items=items, item_s=item_ms / 1000, bootstrap_s=bootstrap_s,
             deadline_s=deadline_s)
    # Then the fleet is the least n with bootstrap + items x item time / n <= deadline
    assert p.workers == least
    assert p.makespan_s <= deadline_s * (1 + 1e-9)
    assert p.worker_seconds == pytest.approx(least * bootstrap_s + items * item_ms / 1000)


def test_the_plan_example() -> None:
    p = plan(items=1_000_000, item_s=0.010, bootstrap_s=300, deadline_s=1800)
    assert p.workers == 7
    assert p.makespan_s == pytest.approx(300 + 10_000 / 7)
    assert p.worker_seconds == pytest.approx(12_100)
    assert p.cost == pytest.approx(12_100 / 3600 * 0.2104)
    assert next(r for r in p.tradeoff if r.workers == 7).meets_deadline
    assert not next(r for r in p.tradeoff if r.workers == 6).meets_deadline
    costs = [r.cost for r in p.tradeoff]
    assert costs == sorted(costs)  # more workers: sooner, never cheaper


def test_a_booting_worker_counts_from_when_its_bootstrap_ends() -> None:
    # Given one worker 100 s from ready, and work it alone does 60 s after the deadline
    booting = WorkerView(id="b", state=WorkerState.BOOTING, capacity=Capacity.SPOT,
                         started_at=NOW - 200)
    view = FleetView(jobs=(JobBacklog(id="j", items=1_000, created_at=NOW,
                                      deadline=NOW + 1500),),
                     workers=(booting,), item_s=1.46, bootstrap_s=300)
    # When the policy decides: 100 + 1460 s > 1500 s, so one more is needed
    d = decide(view, PolicyConfig(deadline_margin=0), NOW)
    assert len(d.start) == 1
    # With the whole bootstrap still to go (a fresh worker) it would have needed the same
    view_done = FleetView(jobs=view.jobs, workers=(WorkerView(
        id="b", state=WorkerState.BUSY, capacity=Capacity.SPOT, started_at=NOW - 400),),
        item_s=1.46, bootstrap_s=300)
    assert decide(view_done, PolicyConfig(deadline_margin=0), NOW).start == ()


def test_spot_first_then_on_demand_when_spot_is_refused() -> None:
    view = FleetView(jobs=(JobBacklog(id="j", items=100_000, created_at=NOW,
                                      deadline=NOW + 1800),), workers=(),
                     item_s=0.01, bootstrap_s=300)
    assert set(decide(view, PolicyConfig(), NOW).start) == {Capacity.SPOT}
    refused = FleetView(jobs=view.jobs, workers=(), item_s=0.01, bootstrap_s=300,
                        spot_available=False)
    assert set(decide(refused, PolicyConfig(), NOW).start) == {Capacity.ON_DEMAND}
    stuck = decide(refused, PolicyConfig(on_demand_fallback=False), NOW)
    assert stuck.start == ()
    assert any("fallback is off" in r for r in stuck.reasons)


def test_a_decision_explains_itself_in_json() -> None:
    view = FleetView(jobs=(JobBacklog(id="j", items=1_000_000, created_at=NOW,
                                      deadline=NOW + 1800),), workers=(),
                     item_s=0.01, bootstrap_s=300)
    doc = json.loads(json.dumps(decide(view, PolicyConfig(), NOW).to_dict()))
    assert doc["desired"] == 7 and doc["start"] == ["spot"] * 7
    assert doc["reasons"][0].startswith("start 7: the least that meets every deadline")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"min_workers": 3, "max_workers": 2}, "min_workers (3) is above max_workers (2)"),
    ({"cooldown_s": -1}, "cooldown_s must be"),
    ({"deadline_margin": 1.5}, "deadline_margin must be in [0, 1)"),
])
def test_bad_policy_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        PolicyConfig(**kwargs)  # type: ignore[arg-type]


def test_a_view_with_no_service_time_is_refused() -> None:
    with pytest.raises(ConfigError, match="service time per item must be positive"):
        FleetView(jobs=(), workers=(), item_s=0, bootstrap_s=300)
