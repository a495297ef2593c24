"""The autoscalers the simulator compares: gpufleet's policy and three baselines.

Each one is called every ``interval_s`` with the same ``FleetView`` the
policy sees and answers with a ``Decision``. The baselines model how the real
systems behave, configured the way their documentation recommends:

- ``fixed``: an always-on fleet sized for the largest batch (the least n that
  does the largest batch within its deadline, warm from the start); an
  interrupted worker is replaced.
- ``target-tracking``: an EC2 Auto Scaling target tracking policy on SQS
  backlog per instance (messages / InService instances; metric math guarded
  so that an empty group reads the whole backlog, and a step scaling policy
  on queue depth to leave zero, since target tracking alone cannot), target = acceptable
  latency / time per item with acceptable latency = deadline - bootstrap
  (AWS's recipe). One-minute datapoints; the scale-out alarm needs 3
  consecutive datapoints above target and sets capacity to
  ceil(capacity * metric / target); the scale-in alarm needs 15 consecutive
  datapoints under 90 % of the target and removes only what keeps the metric
  under the target, at most once per 300 s scale-in cooldown. Alarm actions
  repeat every minute while in alarm. Instances to terminate are picked at
  random (default termination policy, one zone, one launch template).
- ``keda``: KEDA's aws-sqs-queue scaler (queueLength per replica = the same
  target, activationQueueLength 0, visible + in-flight messages, polling
  every 30 s, cooldownPeriod 300 s before scaling to zero) driving the HPA
  (sync every 15 s, 10 % tolerance, scale-up at most max(100 %, 4 pods) per
  15 s, scale-down stabilisation window 300 s). Pods removed first: not
  ready, then the most recently started (ReplicaSet rules).

``compare`` also runs the queue-driven two tuned: their target swept on the
trace, keeping the cheapest that meets every deadline.

Capacity: every baseline starts spot, on-demand while spot is unavailable,
like a mixed-instances group with capacity rebalancing.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gpufleet.autoscale.policy import Decision, FleetView, PolicyConfig, WorkerView, decide
from gpufleet.domain import Capacity, WorkerState

__all__ = ["Autoscaler", "Fixed", "Gpufleet", "Keda", "TargetTracking"]


class Autoscaler(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def interval_s(self) -> float: ...  # how often it decides
    @property
    def warm_workers(self) -> int: ...  # workers already up when the simulation starts
    @property
    def event_driven(self) -> bool: ...  # decides as soon as a batch lands, too

    def decide(self, view: FleetView, now: float) -> Decision: ...


def _resize(view: FleetView, desired: int, reasons: list[str],
            victim_order: Callable[[WorkerView], tuple[float, ...]]) -> Decision:
    """Start or drain workers to reach ``desired`` (a group's desired capacity)."""
    active = [w for w in view.workers if w.state is not WorkerState.DRAINING]
    start: tuple[Capacity, ...] = ()
    drain: tuple[str, ...] = ()
    if desired > len(active):
        capacity = Capacity.SPOT if view.spot_available else Capacity.ON_DEMAND
        start = (capacity,) * (desired - len(active))
    elif desired < len(active):
        drain = tuple(w.id for w in sorted(active, key=victim_order)[:len(active) - desired])
    return Decision(desired=desired, start=start, drain=drain,
                    reasons=tuple(reasons) or (f"hold {desired}",))


@dataclass
class Gpufleet:
    config: PolicyConfig
    interval_s: float = 15.0
    name: str = "gpufleet"
    warm_workers: int = 0
    event_driven: bool = True

    def decide(self, view: FleetView, now: float) -> Decision:
        return decide(view, self.config, now)


@dataclass
class Fixed:
    size: int
    interval_s: float = 60.0
    name: str = "fixed"
    event_driven: bool = False

    @property
    def warm_workers(self) -> int:
        return self.size

    def decide(self, view: FleetView, now: float) -> Decision:
        return _resize(view, self.size, [], lambda w: (w.started_at,))


@dataclass
class TargetTracking:
    target: float  # backlog (items) per instance
    max_size: int
    min_size: int = 0
    seed: int = 0
    interval_s: float = 60.0  # one datapoint a minute
    out_datapoints: int = 3
    in_datapoints: int = 15
    in_ratio: float = 0.9
    scale_in_cooldown_s: float = 300.0
    name: str = "target-tracking"
    event_driven: bool = False
    warm_workers: int = 0
    desired: int = 0
    last_scale_in: float = -math.inf
    points: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"asg-{self.seed}")
        self.points = deque(maxlen=max(self.out_datapoints, self.in_datapoints))

    def decide(self, view: FleetView, now: float) -> Decision:
        in_service = sum(1 for w in view.workers if w.state is not WorkerState.DRAINING)
        metric = view.backlog / max(in_service, 1)
        self.points.append(metric)
        recent = list(self.points)
        reasons = []
        if len(recent) >= self.out_datapoints and all(
                p > self.target for p in recent[-self.out_datapoints:]):
            new = min(self.max_size, math.ceil(max(in_service, 1) * metric / self.target))
            if new > self.desired:
                reasons.append(f"scale out to {new}: backlog per instance {metric:.0f} > "
                               f"target {self.target:.0f} for {self.out_datapoints} min")
                self.desired = new
        elif len(recent) >= self.in_datapoints and all(
                p < self.in_ratio * self.target for p in recent[-self.in_datapoints:]) \
                and now - self.last_scale_in >= self.scale_in_cooldown_s:
            new = max(self.min_size, math.ceil(in_service * metric / self.target))
            if new < self.desired:
                reasons.append(f"scale in to {new}: backlog per instance {metric:.0f} under "
                               f"target for {self.in_datapoints} min")
                self.desired, self.last_scale_in = new, now
        if self.desired == 0 and in_service == 0 and view.backlog > 0:
            # Backlog per instance has no value for an empty group: a step scaling
            # policy on the queue's depth takes it from zero to one.
            self.desired = 1
            reasons.append("step scaling: backlog in an empty group, capacity 1")
        order = {w.id: self._rng.random() for w in view.workers}
        return _resize(view, self.desired, reasons, lambda w: (order[w.id],))


@dataclass
class Keda:
    target: float  # queueLength per replica, in items
    max_replicas: int
    activation: float = 0.0
    polling_s: float = 30.0
    cooldown_s: float = 300.0
    interval_s: float = 15.0  # HPA sync period
    tolerance: float = 0.1
    scale_down_window_s: float = 300.0
    name: str = "keda"
    event_driven: bool = False
    warm_workers: int = 0
    replicas: int = 0
    metric: float = 0.0
    last_poll: float = -math.inf
    last_active: float = -math.inf
    history: deque[tuple[float, int]] = field(default_factory=deque)

    def decide(self, view: FleetView, now: float) -> Decision:
        if now - self.last_poll >= self.polling_s - 1e-9:
            self.metric, self.last_poll = float(view.backlog), now
            if self.metric > self.activation:
                self.last_active = now
        reasons = []
        if self.replicas == 0:
            if self.metric > self.activation:
                self.replicas = 1
                reasons.append(f"activate: queue {self.metric:.0f} > {self.activation:.0f}")
        elif self.metric <= self.activation and now - self.last_active >= self.cooldown_s:
            self.replicas = 0
            self.history.clear()
            reasons.append(f"scale to zero: inactive for {self.cooldown_s:.0f} s")
        else:
            self.replicas = self._hpa(now, reasons)
        started = {w.id: w.started_at for w in view.workers}
        return _resize(view, self.replicas, reasons, lambda w: (
            0 if w.state is WorkerState.BOOTING else 1, -started[w.id]))

    def _hpa(self, now: float, reasons: list[str]) -> int:
        current = self.replicas
        if abs(self.metric / (self.target * current) - 1) <= self.tolerance:
            recommended = current
        else:
            recommended = math.ceil(self.metric / self.target)
        recommended = min(self.max_replicas, max(1, recommended))
        self.history.append((now, recommended))
        while self.history and self.history[0][0] < now - self.scale_down_window_s:
            self.history.popleft()
        if recommended > current:
            new = min(recommended, max(2 * current, current + 4))
        else:
            new = min(current, max(r for _, r in self.history))
        if new != current:
            reasons.append(f"HPA {current} -> {new}: queue {self.metric:.0f}, "
                           f"target {self.target:.0f} per replica")
        return new
