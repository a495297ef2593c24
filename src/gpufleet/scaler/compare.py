"""Run gpufleet's policy and the baselines over the same trace and seed."""

from __future__ import annotations

import math

from gpufleet.errors import ConfigError
from gpufleet.scaler.baselines import Autoscaler, Fixed, Gpufleet, Keda, TargetTracking
from gpufleet.scaler.policy import PolicyConfig
from gpufleet.scaler.simulate import SimConfig, SimResult, simulate
from gpufleet.scaler.traces import Trace

__all__ = ["POLICIES", "compare", "make_autoscaler"]

POLICIES = ("gpufleet", "fixed", "target-tracking", "keda")


def make_autoscaler(name: str, trace: Trace, cfg: SimConfig, policy: PolicyConfig, *,
                    poll_s: float = 15.0) -> Autoscaler:
    """The named autoscaler, configured for this trace as its documentation recommends.

    The baselines' target backlog per worker is what one worker does within
    the deadline once booted: (deadline - bootstrap) / time per item.
    """
    deadline_s = min((b.deadline_s for b in trace.batches), default=1800.0)
    target = max(1.0, (deadline_s - cfg.bootstrap_s) / cfg.item_s)
    if name == "gpufleet":
        return Gpufleet(policy, interval_s=poll_s)
    if name == "fixed":
        usable = deadline_s * (1 - policy.deadline_margin)
        size = math.ceil(trace.largest * cfg.item_s / usable) if trace.largest else 0
        return Fixed(min(policy.max_workers, max(1, size)))
    if name == "target-tracking":
        return TargetTracking(target, policy.max_workers, min_size=policy.min_workers,
                              seed=cfg.seed)
    if name == "keda":
        return Keda(target, policy.max_workers)
    raise ConfigError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}, all")


def compare(names: list[str], trace: Trace, cfg: SimConfig, policy: PolicyConfig, *,
            poll_s: float = 15.0) -> list[SimResult]:
    """One simulation per policy name ("all" expands to every policy), same trace and seed."""
    expanded = list(POLICIES) if "all" in names else names
    return [simulate(trace, make_autoscaler(n, trace, cfg, policy, poll_s=poll_s), cfg)
            for n in expanded]
