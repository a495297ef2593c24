"""Run gpufleet's policy and the baselines over the same trace and seed.

The queue-driven baselines come in two variants: configured as their
documentation recommends (``target-tracking``, ``keda``), and tuned the way an
operator would (``-tuned``): sweep the target backlog per worker over a
geometric grid from the documented value down to 1/64 of it (steps of
sqrt(2)), then refine between the best target and the next larger one
(steps of 2^(1/16)), and keep the cheapest target that meets every deadline
of this very trace and seed. That is hindsight, so it favours the baseline;
when no target meets every deadline, the tuned variant keeps the one meeting
the most deadlines, then the cheapest.
"""

from __future__ import annotations

import math
from dataclasses import replace

from gpufleet.autoscale.policy import PolicyConfig
from gpufleet.errors import ConfigError
from gpufleet.simulator.baselines import Autoscaler, Fixed, Gpufleet, Keda, TargetTracking
from gpufleet.simulator.simulate import SimConfig, SimResult, simulate
from gpufleet.simulator.traces import Trace

__all__ = ["POLICIES", "TUNING_GRID", "compare", "make_autoscaler", "setting"]

POLICIES = ("gpufleet", "fixed", "target-tracking", "target-tracking-tuned", "keda",
            "keda-tuned")
# The tuned targets: the documented one times 2^(-k/2), k = 0..12, then refined.
TUNING_GRID = tuple(2 ** (-k / 2) for k in range(13))
REFINE_STEPS = 8  # 2^(-j/16), j = 1..7, below the next larger grid target


def _documented_target(trace: Trace, cfg: SimConfig) -> float:
    """What one worker does within the deadline once booted: (deadline - bootstrap) / item."""
    deadline_s = min((b.deadline_s for b in trace.batches), default=1800.0)
    return max(1.0, (deadline_s - cfg.bootstrap_s) / cfg.item_s)


def _queue_driven(kind: str, target: float, cfg: SimConfig,
                  policy: PolicyConfig) -> TargetTracking | Keda:
    if kind == "target-tracking":
        return TargetTracking(target, policy.max_workers, min_size=policy.min_workers,
                              seed=cfg.seed)
    return Keda(target, policy.max_workers)


def _tuned(kind: str, trace: Trace, cfg: SimConfig,
           policy: PolicyConfig) -> TargetTracking | Keda:
    """The cheapest target on the grid that meets every deadline of ``trace`` (hindsight)."""
    documented = _documented_target(trace, cfg)
    best: tuple[tuple[int, float], float] | None = None

    def consider(factor: float) -> None:
        nonlocal best
        target = max(1.0, round(documented * factor))
        r = simulate(trace, _queue_driven(kind, target, cfg, policy), cfg)
        score = (-r.deadlines_met, r.cost)
        if best is None or score < best[0]:
            best = (score, target)

    for factor in TUNING_GRID:
        consider(factor)
    assert best is not None  # the grid is never empty
    coarse = best[1] / documented
    if coarse < 1.0:  # between the best grid target and the next larger one
        above = min(1.0, coarse * 2 ** 0.5)
        for j in range(1, REFINE_STEPS):
            consider(above * 2 ** (-j / 16))
    assert best is not None  # the grid is never empty
    scaler = _queue_driven(kind, best[1], cfg, policy)
    scaler.name = f"{kind}-tuned"
    return scaler


def make_autoscaler(name: str, trace: Trace, cfg: SimConfig, policy: PolicyConfig, *,
                    poll_s: float = 15.0) -> Autoscaler:
    """The named autoscaler, configured for this trace (see the module's docstring)."""
    deadline_s = min((b.deadline_s for b in trace.batches), default=1800.0)
    if name == "gpufleet":
        return Gpufleet(policy, interval_s=poll_s)
    if name == "fixed":
        usable = deadline_s * (1 - policy.deadline_margin)
        size = math.ceil(trace.largest * cfg.item_s / usable) if trace.largest else 0
        return Fixed(min(policy.max_workers, max(1, size)))
    if name in ("target-tracking", "keda"):
        return _queue_driven(name, _documented_target(trace, cfg), cfg, policy)
    if name in ("target-tracking-tuned", "keda-tuned"):
        return _tuned(name.removesuffix("-tuned"), trace, cfg, policy)
    raise ConfigError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}, all")


def setting(scaler: Autoscaler) -> str:
    """How ``scaler`` is configured, in a few words."""
    if isinstance(scaler, Fixed):
        return f"{scaler.size} workers"
    if isinstance(scaler, (TargetTracking, Keda)):
        return f"target {scaler.target:,.0f} items/worker"
    if isinstance(scaler, Gpufleet):
        return f"poll {scaler.interval_s:g} s"
    return ""


def compare(names: list[str], trace: Trace, cfg: SimConfig, policy: PolicyConfig, *,
            poll_s: float = 15.0) -> list[SimResult]:
    """One simulation per policy name ("all" expands to every policy), same trace and seed."""
    expanded = list(POLICIES) if "all" in names else names
    results = []
    for n in expanded:
        scaler = make_autoscaler(n, trace, cfg, policy, poll_s=poll_s)
        result = simulate(trace, scaler, cfg)
        note = setting(scaler)
        if n.endswith("-tuned") and result.deadlines_met < result.deadlines_total:
            note += " (no target met every deadline)"
        results.append(replace(result, setting=note))
    return results
