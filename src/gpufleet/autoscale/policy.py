"""The scaling policy: one pure function from what the fleet looks like to what it should do.

The controller and the simulator call the same function::

    decide(view: FleetView, config: PolicyConfig, now: float) -> Decision

It reads no clock and does no I/O: ``now`` and every time in the view are on
one clock chosen by the caller (``time.time()`` in the controller, simulated
seconds in the simulator). A ``FleetView`` describes one pool of
interchangeable workers (one model, one queue):

- ``jobs``: one ``JobBacklog`` per job with work left: ``items`` queued plus
  in flight, ``deadline`` (absolute time, or None: ``created_at +
  config.target_drain_s`` applies), ``priority`` (higher first when deadlines
  tie) and ``created_at``.
- ``workers``: one ``WorkerView`` per worker the provider knows about:
  ``state`` (booting, ready = up with no lease, busy, draining), ``capacity``
  (spot or on-demand), ``started_at``, ``boot_remaining_s`` (None: estimated
  as ``bootstrap_s - (now - started_at)``), ``idle_since`` (when a ready
  worker last finished work, or became ready).
- ``item_s``: measured service time per item per worker; ``bootstrap_s``:
  measured time from start to ready.
- ``spot_available``: False while the provider reports spot capacity refused
  or interrupted recently; new workers then start on on-demand (if
  ``config.on_demand_fallback``).

The ``Decision``: ``desired`` workers after it (not counting draining ones),
``start`` (one ``Capacity`` per worker to start), ``drain`` (ids of workers to
ask to stop: they finish or release their leases; nothing is killed),
``reasons`` (human-readable, one line each), ``finish_at`` (predicted time the
backlog is gone, None when there is none), ``job_finish_at`` (each job's
predicted finish, earliest deadline first) and ``late`` (ids of jobs predicted
to miss their deadline even so).

How it decides (a fluid model: a worker ready at time r has done
``(t - r) / item_s`` items by time t):

- Bootstrap-aware: a ready or busy worker contributes from now, a booting one
  after what remains of its bootstrap, a new one after ``bootstrap_s``, a
  draining one not at all.
- Deadlines (EDF over cumulative backlog): jobs sorted by deadline; for every
  job k the fleet must have done the items of jobs 1..k by its deadline less
  a reserve of ``deadline_margin`` (a fraction) of the time left to it, which
  absorbs polling delay and jitter and shrinks as the job nears its end. The
  least number of new workers that achieves this is started. When no number
  within ``max_workers`` can, the fleet grows to finish as early as it
  usefully can: up to ``max_workers``, as long as each new worker would work
  at least as long as it boots.
- Never a useless worker: a new worker is started only if the backlog would
  not be gone before it finishes booting, and a booting worker that would
  become ready after the backlog is gone is drained.
- Scale-in only by draining, never a busy worker (unless above
  ``max_workers``): ready workers idle for ``cooldown_s`` (longest idle
  first, and only if the deadlines are met without them) and booting workers
  that would be useless are asked to stop; when ``min_workers`` limits the
  drain, ready workers are the ones kept. With an empty queue the fleet
  therefore reaches zero ``cooldown_s`` after its last work, or
  ``min_workers`` (a warm pool kept even with no work).
- Capacity: spot first; on-demand when spot is unavailable (or disabled, or
  not cheaper), unless the fallback is disabled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from gpufleet.autoscale.fluid import EPS as _EPS
from gpufleet.autoscale.fluid import Target, finish_time, new_needed, worthwhile
from gpufleet.domain import Capacity, WorkerState
from gpufleet.errors import ConfigError

__all__ = ["Decision", "FleetView", "JobBacklog", "PolicyConfig", "WorkerView", "decide", "due"]

# g4dn.xlarge (1 NVIDIA T4), us-east-1, Linux: the on-demand list price, and a
# typical spot price (spot prices move; set your own with the flags/settings).
ON_DEMAND_PRICE_PER_H = 0.526
SPOT_PRICE_PER_H = 0.2104


DEFAULT_COOLDOWN_S = 30.0


@dataclass(frozen=True, kw_only=True, slots=True)
class JobBacklog:
    id: str
    items: int  # queued + in flight
    created_at: float
    deadline: float | None = None  # absolute, on the caller's clock
    priority: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerView:
    id: str
    state: WorkerState
    capacity: Capacity
    started_at: float
    boot_remaining_s: float | None = None  # booting only; None: estimate from bootstrap_s
    idle_since: float | None = None  # ready only; None: treated as idle since now


@dataclass(frozen=True, kw_only=True, slots=True)
class FleetView:
    jobs: tuple[JobBacklog, ...]
    workers: tuple[WorkerView, ...]
    item_s: float  # measured service time per item per worker
    bootstrap_s: float  # measured start-to-ready time
    spot_available: bool = True

    def __post_init__(self) -> None:
        if not (self.item_s > 0 and math.isfinite(self.item_s)):
            raise ConfigError(f"service time per item must be positive, not {self.item_s}")
        if not (self.bootstrap_s >= 0 and math.isfinite(self.bootstrap_s)):
            raise ConfigError(f"bootstrap time must be zero or more, not {self.bootstrap_s}")

    @property
    def backlog(self) -> int:
        return sum(j.items for j in self.jobs if j.items > 0)


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyConfig:
    min_workers: int = 0
    max_workers: int = 100
    cooldown_s: float = DEFAULT_COOLDOWN_S  # idle time before a ready worker is drained
    target_drain_s: float = 1800.0  # deadline of a job that has none: created_at + this
    deadline_margin: float = 0.02  # reserve this fraction of the time left to each deadline
    spot: bool = True
    on_demand_fallback: bool = True
    spot_price_per_h: float = SPOT_PRICE_PER_H
    on_demand_price_per_h: float = ON_DEMAND_PRICE_PER_H

    def __post_init__(self) -> None:
        if self.min_workers < 0 or self.max_workers < 0:
            raise ConfigError("min_workers and max_workers must be zero or more")
        if self.min_workers > self.max_workers:
            raise ConfigError(f"min_workers ({self.min_workers}) is above max_workers "
                              f"({self.max_workers})")
        if not 0 <= self.deadline_margin < 1:
            raise ConfigError(f"deadline_margin must be in [0, 1), not {self.deadline_margin}")
        for name in ("cooldown_s", "target_drain_s", "spot_price_per_h",
                     "on_demand_price_per_h"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number, zero or more, not {value}")

    def price_per_h(self, capacity: Capacity) -> float:
        return self.spot_price_per_h if capacity is Capacity.SPOT else self.on_demand_price_per_h


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    desired: int
    start: tuple[Capacity, ...] = ()
    drain: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    finish_at: float | None = None
    late: tuple[str, ...] = ()
    job_finish_at: tuple[tuple[str, float], ...] = ()  # (job id, predicted finish)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["start"] = [c.value for c in self.start]
        doc["drain"], doc["reasons"], doc["late"] = (
            list(self.drain), list(self.reasons), list(self.late))
        return doc


def due(job: JobBacklog, config: PolicyConfig) -> float:
    """When the job should be done: its deadline, else ``target_drain_s`` after creation."""
    return job.deadline if job.deadline is not None else job.created_at + config.target_drain_s


def _targets(view: FleetView, config: PolicyConfig, now: float) -> list[Target]:
    jobs = [j for j in view.jobs if j.items > 0]
    jobs.sort(key=lambda j: (due(j, config), -j.priority, j.id))
    targets, cumulative = [], 0.0
    for j in jobs:
        cumulative += j.items * view.item_s
        left = due(j, config) - now
        targets.append(Target(j.id, left, left - config.deadline_margin * max(0.0, left),
                              cumulative))
    return targets


def _ready_in(w: WorkerView, view: FleetView, now: float) -> float:
    if w.state is not WorkerState.BOOTING:
        return 0.0
    if w.boot_remaining_s is not None:
        return max(0.0, w.boot_remaining_s)
    return max(0.0, view.bootstrap_s - (now - w.started_at))


def _start_capacity(view: FleetView, config: PolicyConfig) -> tuple[Capacity | None, str]:
    if config.spot and view.spot_available and config.spot_price_per_h < \
            config.on_demand_price_per_h:
        return Capacity.SPOT, "spot"
    if config.spot and not view.spot_available and not config.on_demand_fallback:
        return None, "spot refused or interrupted and on-demand fallback is off"
    why = ("spot refused or interrupted recently" if config.spot and not view.spot_available
           else "spot disabled" if not config.spot else "spot is not cheaper")
    return Capacity.ON_DEMAND, f"on-demand ({why})"


def decide(view: FleetView, config: PolicyConfig, now: float) -> Decision:
    """The fleet this view calls for: see the module docstring."""
    active = [w for w in view.workers if w.state is not WorkerState.DRAINING]
    ready_in = {w.id: _ready_in(w, view, now) for w in active}
    targets = _targets(view, config, now)
    total_s = targets[-1].work_s if targets else 0.0
    reasons: list[str] = []
    drain: list[str] = []

    # Over the cap (e.g. max_workers lowered): drain idle, then booting, then busy.
    over = len(active) - config.max_workers
    if over > 0:
        order = {WorkerState.READY: 0, WorkerState.BOOTING: 1, WorkerState.BUSY: 2}
        victims = sorted(active, key=lambda w: (order[w.state], -ready_in[w.id], w.id))[:over]
        drain += [w.id for w in victims]
        reasons.append(f"drain {over}: {len(active)} workers is above max_workers "
                       f"{config.max_workers}")
    kept = [w for w in active if w.id not in drain]

    # Booting workers that would become ready after the backlog is gone: drain, latest first.
    for w in sorted((w for w in kept if w.state is WorkerState.BOOTING),
                    key=lambda w: (-ready_in[w.id], w.id)):
        if len(kept) <= config.min_workers:
            break
        others = [ready_in[o.id] for o in kept if o.id != w.id]
        gone_in = finish_time(others, total_s)
        if gone_in <= ready_in[w.id] + _EPS:
            drain.append(w.id)
            kept.remove(w)
            reasons.append(f"drain booting {w.id}: the backlog is gone in {gone_in:.0f} s, "
                           f"before it is ready in {ready_in[w.id]:.0f} s")

    # Idle workers past the cool-down: drain, longest idle first, down to min_workers,
    # unless the backlog needs them (a ready worker beats one that still has to boot).
    idle = sorted((w for w in kept if w.state is WorkerState.READY
                   and now - (w.idle_since if w.idle_since is not None else now)
                   >= config.cooldown_s),
                  key=lambda w: (w.idle_since if w.idle_since is not None else now, w.id))
    idle = idle[:max(0, len(kept) - config.min_workers)]
    if idle:
        rest = [ready_in[w.id] for w in kept if w not in idle]
        if new_needed(rest, targets, view.bootstrap_s, 0) == 0:
            for w in idle:
                drain.append(w.id)
                kept.remove(w)
                idle_s = now - (w.idle_since if w.idle_since is not None else now)
                reasons.append(f"drain idle {w.id}: idle {idle_s:.0f} s >= cool-down "
                               f"{config.cooldown_s:.0f} s")

    # Scale out: the least number of new workers that meets every deadline.
    existing = [ready_in[w.id] for w in kept]
    room = max(0, config.max_workers - len(kept))
    needed = new_needed(existing, targets, view.bootstrap_s, room)
    if needed is not None:
        new = needed
        if new:
            reasons.append(f"start {new}: the least that meets every deadline "
                           f"({len(targets)} job(s), {total_s / 3600:.2f} worker-hours of "
                           "backlog)")
    else:
        new = worthwhile(existing, total_s, view.bootstrap_s, room)
        if new:
            reasons.append(f"start {new}: deadlines cannot all be met within max_workers "
                           f"{config.max_workers}; finishing earlier, each new worker "
                           "working at least as long as it boots")
    warm = max(0, config.min_workers - len(kept) - new)
    if warm:
        reasons.append(f"start {warm}: warm pool of min_workers {config.min_workers}")
    capacity, why = _start_capacity(view, config)
    start: tuple[Capacity, ...] = ()
    if new + warm and capacity is None:
        reasons.append(f"cannot start {new + warm}: {why}")
    elif new + warm:
        start = (capacity,) * (new + warm) if capacity else ()
        reasons.append(f"capacity: {why}")

    fleet = existing + [view.bootstrap_s] * len(start)
    finish_in = finish_time(fleet, total_s) if targets else None
    job_finish_in = {tg.job: finish_time(fleet, tg.work_s) for tg in targets}
    late = tuple(tg.job for tg in targets if job_finish_in[tg.job] > tg.deadline_in + _EPS)
    if late:
        reasons.append(f"late: {', '.join(late)} cannot meet the deadline with "
                       f"{len(fleet)} worker(s)")
    if not reasons:
        reasons.append(f"hold {len(kept)}: " + (
            f"backlog gone in {finish_in:.0f} s, every deadline met" if finish_in is not None
            else "no backlog"))
    return Decision(desired=len(kept) + len(start), start=start, drain=tuple(drain),
                    reasons=tuple(reasons),
                    finish_at=None if finish_in is None else now + finish_in, late=late,
                    job_finish_at=tuple((job, now + s) for job, s in job_finish_in.items()))
