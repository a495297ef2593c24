"""PNG charts for ``gpufleet plan`` and ``gpufleet simulate`` (matplotlib, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpufleet.autoscale.plan import Plan
from gpufleet.errors import ConfigError
from gpufleet.simulator.simulate import SimResult


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'gpufleet[sim]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ticker() -> Any:
    import matplotlib.ticker

    return matplotlib.ticker


def _save(fig: Any, path: Path) -> None:
    try:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot write the plot to {path}: {exc}") from exc


def plot_plan(plan: Plan, path: Path) -> None:
    """Makespan and cost against fleet size, with the deadline and the chosen size."""
    plt = _pyplot()
    rows = plan.tradeoff
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([r.workers for r in rows], [r.makespan_s / 60 for r in rows], "o-",
            label="makespan (min)")
    ax.axhline(plan.deadline_s / 60, color="grey", linestyle="--", label="deadline")
    ax.axvline(plan.workers, color="green", linestyle=":", label=f"{plan.workers} workers")
    ax.set_xlabel("workers")
    ax.set_ylabel("makespan (min)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_ticker().ScalarFormatter())
    cost = ax.twinx()
    cost.plot([r.workers for r in rows], [r.cost for r in rows], "s-", color="tab:red",
              label="cost (spot, $)")
    cost.set_ylabel("cost ($, spot)")
    lines = ax.get_legend_handles_labels()[0] + cost.get_legend_handles_labels()[0]
    ax.legend(lines, [str(line.get_label()) for line in lines], loc="upper center")
    ax.set_title(f"{plan.items:,} items x {plan.item_s * 1000:g} ms, "
                 f"bootstrap {plan.bootstrap_s:g} s")
    _save(fig, path)
    plt.close(fig)


def plot_simulation(results: list[SimResult], path: Path) -> None:
    """Fleet size over time for each policy, above the backlog."""
    plt = _pyplot()
    fig, (fleet, backlog) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for r in results:
        hours = [t / 3600 for t, _, _ in r.timeline]
        fleet.step(hours, [n for _, n, _ in r.timeline], where="post",
                   label=f"{r.policy} (${r.cost:.2f}, {r.deadlines_met}/{r.deadlines_total})")
        backlog.step(hours, [b for _, _, b in r.timeline], where="post", label=r.policy)
    fleet.set_ylabel("workers")
    fleet.legend(loc="upper right", fontsize="small")
    backlog.set_ylabel("backlog (items)")
    backlog.set_xlabel("hours")
    if results:
        fleet.set_title(f"trace {results[0].trace}, seed {results[0].seed}")
    _save(fig, path)
    plt.close(fig)
