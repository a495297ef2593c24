"""Capacity planning: `gpufleet plan` sizes a fleet, `gpufleet simulate` compares policies."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gpufleet.cli.common import JsonOpt, err, out
from gpufleet.config import Settings
from gpufleet.durations import parse_duration
from gpufleet.errors import ConfigError

app = typer.Typer()

PlotOpt = Annotated[Path | None, typer.Option(
    "--plot", help="Also draw a chart into this PNG file.", dir_okay=False)]
ItemMsOpt = Annotated[float, typer.Option(help="Service time per item per worker, in ms.")]
SpotOpt = Annotated[float | None, typer.Option(
    "--spot-price", help="Spot $ per worker-hour (default GPUFLEET_SPOT_PRICE_PER_H).")]
OnDemandOpt = Annotated[float | None, typer.Option(
    "--on-demand-price",
    help="On-demand $ per worker-hour (default GPUFLEET_ON_DEMAND_PRICE_PER_H).")]


def _prices(spot: float | None, on_demand: float | None) -> tuple[float, float]:
    settings = Settings.from_env()
    prices = (settings.fleet.spot_price_per_h if spot is None else spot,
              settings.fleet.on_demand_price_per_h if on_demand is None else on_demand)
    if min(prices) < 0:
        raise ConfigError("prices must be zero or more")
    return prices


def _clock(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


@app.command()
def plan(
    items: Annotated[int, typer.Option(min=1, help="Items in the batch.")] = 1_000_000,
    item_ms: ItemMsOpt = 10.0,
    bootstrap: Annotated[str, typer.Option(help="Worker bootstrap time: 5m, 90s...")] = "5m",
    deadline: Annotated[str, typer.Option(help="Finish within: 30m, 1h...")] = "30m",
    spot_price: SpotOpt = None,
    on_demand_price: OnDemandOpt = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The least fleet that finishes a batch by its deadline, its cost, and the trade-off."""
    from gpufleet.autoscale.plan import plan as make_plan

    spot, on_demand = _prices(spot_price, on_demand_price)
    p = make_plan(items=items, item_s=item_ms / 1000,
                  bootstrap_s=parse_duration(bootstrap, what="--bootstrap"),
                  deadline_s=parse_duration(deadline, what="--deadline"),
                  spot_price_per_h=spot, on_demand_price_per_h=on_demand)
    if plot:
        from gpufleet.simulator.plots import plot_plan

        plot_plan(p, plot)
    if as_json:
        out.print(json.dumps(p.to_dict(), indent=2))
        return
    out.print(f"{p.items:,} items x {item_ms:g} ms, bootstrap {_clock(p.bootstrap_s)}, "
              f"deadline {_clock(p.deadline_s)}: [bold]{p.workers} workers[/], makespan "
              f"{_clock(p.makespan_s)}, {p.worker_seconds / 3600:.2f} worker-hours, "
              f"${p.cost:.2f} on spot (${p.cost_on_demand:.2f} on-demand)")
    table = Table("workers", "makespan", "worker-hours", f"spot ${spot:g}/h",
                  f"on-demand ${on_demand:g}/h", "deadline")
    for r in p.tradeoff:
        style = "bold green" if r.workers == p.workers else None
        table.add_row(str(r.workers), _clock(r.makespan_s), f"{r.worker_seconds / 3600:.2f}",
                      f"${r.cost:.2f}", f"${r.cost_on_demand:.2f}",
                      "met" if r.meets_deadline else "missed", style=style)
    out.print(table)
    if plot:
        err.print(f"chart: {plot}")


@app.command()
def simulate(
    policy: Annotated[str, typer.Option(
        help="gpufleet, fixed, target-tracking[-tuned], keda[-tuned], or all.")] = "all",
    trace: Annotated[str, typer.Option(help="daily, poisson, spikes or single.")] = "daily",
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same trace.")] = 0,
    item_ms: ItemMsOpt = 10.0,
    bootstrap: Annotated[str, typer.Option(help="Mean worker bootstrap time.")] = "5m",
    deadline: Annotated[str, typer.Option(help="Each batch's deadline.")] = "30m",
    interruptions_per_h: Annotated[float, typer.Option(
        min=0, help="Spot interruptions per spot worker-hour.")] = 0.02,
    poll: Annotated[str, typer.Option(help="gpufleet controller's polling interval.")] = "15s",
    max_workers: Annotated[int, typer.Option(min=1, help="Fleet cap, every policy.")] = 100,
    cooldown: Annotated[str, typer.Option(help="gpufleet's idle time before a drain.")] = "30s",
    spot_price: SpotOpt = None,
    on_demand_price: OnDemandOpt = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Simulate autoscaling policies over a workload trace: cost, deadlines, latency."""
    from gpufleet.autoscale.policy import PolicyConfig
    from gpufleet.simulator.compare import POLICIES, compare
    from gpufleet.simulator.simulate import SimConfig
    from gpufleet.simulator.traces import make_trace

    if policy != "all" and policy not in POLICIES:
        raise ConfigError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}, all")
    spot, on_demand = _prices(spot_price, on_demand_price)
    poll_s = parse_duration(poll, what="--poll")
    if poll_s <= 0:
        raise ConfigError("--poll must be positive")
    cfg = SimConfig(item_s=item_ms / 1000,
                    bootstrap_s=parse_duration(bootstrap, what="--bootstrap"),
                    interruptions_per_h=interruptions_per_h, spot_price_per_h=spot,
                    on_demand_price_per_h=on_demand, seed=seed)
    if cfg.item_s <= 0:
        raise ConfigError("--item-ms must be positive")
    config = PolicyConfig(max_workers=max_workers,
                          cooldown_s=parse_duration(cooldown, what="--cooldown"),
                          spot_price_per_h=spot, on_demand_price_per_h=on_demand)
    workload = make_trace(trace, seed=seed, deadline_s=parse_duration(deadline, what="--deadline"))
    started = time.monotonic()
    results = compare([policy], workload, cfg, config, poll_s=poll_s)
    elapsed = time.monotonic() - started
    if plot:
        from gpufleet.simulator.plots import plot_simulation

        plot_simulation(results, plot)
    if as_json:
        out.print(json.dumps([r.to_dict() for r in results], indent=2))
        return
    summary = Table("policy", "setting", "GPU-hours", "cost", "deadlines met", "p95 latency",
                    "idle GPU-hours", "on-demand hours", "interruptions",
                    title=f"trace {trace} (seed {seed}): {len(workload.batches)} batches, "
                    f"{sum(b.items for b in workload.batches):,} items")
    for r in results:
        summary.add_row(r.policy, r.setting, f"{r.gpu_hours:.2f}", f"${r.cost:.2f}",
                        f"{r.deadlines_met}/{r.deadlines_total}", _clock(r.p95_latency_s),
                        f"{r.idle_gpu_hours:.2f}", f"{r.on_demand_hours:.2f}",
                        str(r.interruptions))
    out.print(summary)
    if any(r.policy.endswith("-tuned") for r in results):
        out.print("-tuned: the target per worker swept on this very trace and seed, keeping "
                  "the cheapest that meets every deadline. That is hindsight, which favours "
                  "the baseline.")
    batches = Table("batch", "lands", "items", "deadline", *(r.policy for r in results),
                    title="makespan per batch")
    for i, b in enumerate(workload.batches):
        cells = []
        for r in results:
            res = r.batches[i]
            took = "unfinished" if res.makespan_s is None else _clock(res.makespan_s)
            cells.append(f"[green]{took}[/]" if res.met else f"[red]{took} late[/]")
        batches.add_row(b.id, _clock(b.at), f"{b.items:,}", _clock(b.deadline_s), *cells)
    out.print(batches)
    err.print(f"simulated in {elapsed:.1f} s" + (f"; chart: {plot}" if plot else ""))
