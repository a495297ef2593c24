"""Capacity planning for one batch: the fleet size that meets a deadline, and the trade-off.

A fleet of n workers started together from zero finishes ``items`` in
``makespan = bootstrap + items * item_s / n`` and costs ``n * makespan``
worker-seconds (every worker boots, then all share the work). More workers
finish sooner but each pays the bootstrap again, so the cheapest fleet that
meets a deadline is the smallest one: the least n with ``makespan <=
deadline``. The size comes from the policy itself (``policy.decide`` on an
empty fleet, no margin), so planning and autoscaling never disagree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from gpufleet.autoscale.policy import (
    ON_DEMAND_PRICE_PER_H,
    SPOT_PRICE_PER_H,
    FleetView,
    JobBacklog,
    PolicyConfig,
    decide,
)
from gpufleet.errors import ConfigError

__all__ = ["Plan", "PlanRow", "fleet_cost", "plan"]


@dataclass(frozen=True, slots=True)
class PlanRow:
    workers: int
    makespan_s: float
    worker_seconds: float
    cost: float  # at the spot price
    cost_on_demand: float
    meets_deadline: bool


@dataclass(frozen=True, slots=True)
class Plan:
    items: int
    item_s: float
    bootstrap_s: float
    deadline_s: float
    spot_price_per_h: float
    on_demand_price_per_h: float
    workers: int
    makespan_s: float
    worker_seconds: float
    cost: float
    cost_on_demand: float
    tradeoff: tuple[PlanRow, ...]

    def to_dict(self) -> dict[str, object]:
        doc = asdict(self)
        doc["tradeoff"] = [asdict(r) for r in self.tradeoff]
        return doc


def fleet_cost(workers: int, *, items: int, item_s: float, bootstrap_s: float,
               deadline_s: float, spot_price_per_h: float = SPOT_PRICE_PER_H,
               on_demand_price_per_h: float = ON_DEMAND_PRICE_PER_H) -> PlanRow:
    """Makespan and cost of a fleet of ``workers`` started together from zero."""
    makespan = bootstrap_s + items * item_s / workers
    worker_s = workers * makespan
    return PlanRow(workers, makespan, worker_s, worker_s / 3600 * spot_price_per_h,
                   worker_s / 3600 * on_demand_price_per_h, makespan <= deadline_s + 1e-9)


def plan(*, items: int, item_s: float, bootstrap_s: float, deadline_s: float,
         spot_price_per_h: float = SPOT_PRICE_PER_H,
         on_demand_price_per_h: float = ON_DEMAND_PRICE_PER_H,
         max_workers: int = 100_000) -> Plan:
    """The least fleet meeting the deadline, with a trade-off table around it."""
    if items < 1:
        raise ConfigError(f"--items must be at least 1, not {items}")
    if not (item_s > 0 and math.isfinite(item_s)):
        raise ConfigError("--item-ms must be a positive number")
    if spot_price_per_h < 0 or on_demand_price_per_h < 0:
        raise ConfigError("prices must be zero or more")
    if deadline_s <= bootstrap_s:
        raise ConfigError(f"a deadline of {deadline_s:g} s is not longer than the bootstrap "
                          f"({bootstrap_s:g} s): no fleet size can meet it")
    config = PolicyConfig(max_workers=max_workers, deadline_margin=0.0, spot=True,
                          spot_price_per_h=spot_price_per_h,
                          on_demand_price_per_h=on_demand_price_per_h)
    view = FleetView(jobs=(JobBacklog(id="plan", items=items, created_at=0.0,
                                      deadline=deadline_s),),
                     workers=(), item_s=item_s, bootstrap_s=bootstrap_s)
    decision = decide(view, config, 0.0)
    if decision.late:
        raise ConfigError(f"meeting a {deadline_s:g} s deadline takes more than "
                          f"{max_workers} workers")
    n = len(decision.start)

    def row(k: int) -> PlanRow:
        return fleet_cost(k, items=items, item_s=item_s, bootstrap_s=bootstrap_s,
                          deadline_s=deadline_s, spot_price_per_h=spot_price_per_h,
                          on_demand_price_per_h=on_demand_price_per_h)

    chosen = row(n)
    return Plan(items, item_s, bootstrap_s, deadline_s, spot_price_per_h, on_demand_price_per_h,
                n, chosen.makespan_s, chosen.worker_seconds, chosen.cost, chosen.cost_on_demand,
                tuple(row(k) for k in _sizes(n, max_workers)))


def _sizes(n: int, max_workers: int) -> list[int]:
    """Fleet sizes worth showing: powers of two, the neighbours of n, and n's multiples."""
    sizes = {2 ** i for i in range(0, 20) if 2 ** i <= 4 * n}
    sizes |= {n + d for d in range(-2, 3)} | {round(n * f) for f in (1.5, 2, 3, 4)}
    return sorted(k for k in sizes if 1 <= k <= max_workers)
