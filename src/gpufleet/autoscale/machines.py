"""A machine's registry rows, one per GPU pipeline, seen as the one fleet member it is.

A worker started with ``--gpus`` runs one pipeline per GPU, each with its own
row under the machine's instance id. The provider launches and drains
machines, so the controller plans with machines: a machine is busy while any
of its pipelines is (draining it would cut work short), booting while one
still loads its model, ready only once all are idle, and idle since the last
went idle. A pipeline that crashed and was started again leaves a row that
stopped, or one that went quiet: those no longer count.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gpufleet.domain import WorkerGone

QUIET_S = 30.0  # a row not refreshed for this long is a pipeline that died
# Which state stands for the machine when its pipelines differ, first wins.
_PRECEDENCE = ("draining", "busy", "booting", "ready")


def machine_row(rows: Iterable[dict[str, Any]], *, now: float) -> dict[str, Any]:
    """One row for the machine, from its pipelines' rows (at least one)."""
    rows = sorted(rows, key=lambda r: r["last_seen"])
    if not rows:
        raise ValueError("a machine needs at least one row")
    live = [r for r in rows
            if r["state"] not in set(WorkerGone) and now - r["last_seen"] <= QUIET_S]
    if not live:
        return dict(rows[-1])  # every pipeline has gone: as the last one said
    states = {r["state"] for r in live}
    state = next((s for s in _PRECEDENCE if s in states), rows[-1]["state"])
    merged = dict(live[-1])
    merged["state"] = state
    merged["started_at"] = min(r["started_at"] for r in live)
    if state == "ready":
        merged["state_since"] = max(r.get("state_since") or r["started_at"] for r in live)
    merged["pipelines"] = len(live)
    util = [r["gpu_util_pct"] for r in live if r.get("gpu_util_pct") is not None]
    memory = [r["gpu_memory_mb"] for r in live if r.get("gpu_memory_mb") is not None]
    merged["gpu_util_pct"] = round(sum(util) / len(util), 1) if util else None
    merged["gpu_memory_mb"] = round(sum(memory), 1) if memory else None
    return merged

