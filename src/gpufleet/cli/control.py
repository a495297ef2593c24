"""The fleet's commands: `gpufleet controller` runs the autoscaler, `gpufleet fleet` shows it."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from types import FrameType
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from gpufleet.autoscale.policy import DEFAULT_COOLDOWN_S, PolicyConfig
from gpufleet.cli.common import JsonOpt, ModelOpt, err, out
from gpufleet.cli.common import setup as _setup
from gpufleet.durations import parse_duration
from gpufleet.index.fleet_records import FleetRecords
from gpufleet.models.base import canonical_spec

app = typer.Typer()

_DECISION_KEYS = ("at", "desired", "start", "drain", "reasons", "finish_at", "late")
_WORKER_KEYS = ("id", "state", "capacity", "worker", "pipelines", "gpu_util_pct",
                "gpu_memory_mb")


@app.command()
def controller(
    provider: Annotated[str, typer.Option(
        help="Where workers run: local, aws or kubernetes.")] = "local",
    inbox: Annotated[str | None, typer.Option(
        help="Manifests landing here become jobs: file:///dir/ or s3://bucket/prefix/.")
    ] = None,
    model: ModelOpt = None,
    min_workers: Annotated[int, typer.Option(
        min=0, help="Workers kept ready with no work (a warm pool).")] = 0,
    max_workers: Annotated[int, typer.Option(min=0, help="Never more workers than this.")] = 10,
    cooldown: Annotated[float, typer.Option(
        min=0, help="Seconds a worker stays idle before it is drained.")] = DEFAULT_COOLDOWN_S,
    item_ms: Annotated[float | None, typer.Option(
        help="Service time per item until measured (default: the model's item_ms, or 10).")
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(
        help="Bootstrap time until measured, e.g. 5m (default: the model's bootstrap_s, "
        "or 5m).")] = None,
    gpus_per_machine: Annotated[int, typer.Option(
        min=1, help="GPUs of a machine the provider launches, each with its worker (the "
        "machine runs `gpufleet worker --gpus all`), until its workers report it.")] = 1,
    spot: Annotated[bool, typer.Option(help="Start spot workers first.")] = True,
    on_demand_fallback: Annotated[bool, typer.Option(
        help="Start on-demand workers while spot is refused or reclaimed.")] = True,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between ticks.")] = 2.0,
    once: Annotated[bool, typer.Option(help="Decide and act once, then exit.")] = False,
    metrics_port: Annotated[int, typer.Option(
        min=0, max=65535, help="Serve Prometheus metrics on this port, at /metrics (0: off).")
    ] = 0,
) -> None:
    """Scale workers to the backlog: from zero when work lands, back to zero when it is done."""
    from gpufleet.autoscale.controller import Controller, Estimates
    from gpufleet.autoscale.metrics import ControllerMetrics
    from gpufleet.autoscale.providers.base import open_provider
    from gpufleet.intake.inbox import open_inbox
    from gpufleet.intake.ingest import Ingest
    from gpufleet.metrics_server import serve_metrics

    settings, index = _setup(logging.INFO)
    # Checked first: a typo would otherwise launch workers that die, again and again.
    model = canonical_spec(model or settings.model)
    config = PolicyConfig(
        min_workers=min_workers, max_workers=max_workers, cooldown_s=cooldown,
        target_drain_s=settings.fleet.target_drain_s, spot=spot,
        on_demand_fallback=on_demand_fallback,
        spot_price_per_h=settings.fleet.spot_price_per_h,
        on_demand_price_per_h=settings.fleet.on_demand_price_per_h)
    estimates = Estimates.for_model(
        model, item_s=item_ms / 1000 if item_ms else None,
        bootstrap_s=parse_duration(bootstrap, what="--bootstrap") if bootstrap else None,
        gpus=gpus_per_machine)
    ingest = Ingest(settings, index, open_inbox(inbox), model=model) if inbox else None
    metrics = ControllerMetrics(model=model, config=config, records=FleetRecords(index)) \
        if metrics_port else None
    server = serve_metrics(metrics.registry, metrics_port) if metrics else None
    ctl = Controller(settings, index, open_provider(provider, settings, model=model),
                     model=model, config=config, estimates=estimates, ingest=ingest,
                     on_tick=metrics)
    if once:
        ctl.tick()
        ctl.close()
        return
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("%s: controller stopping; the workers go on",
                                         signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        ctl.run(interval_s=interval, stop=stop)
    finally:
        ctl.close()
        if server is not None:
            server.close()


@app.command()
def fleet(
    model: ModelOpt = None,
    history: Annotated[int, typer.Option(min=1, help="How many decisions to show.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The fleet as the controller last saw it: desired size, workers, recent decisions."""
    _, index = _setup()
    model = canonical_spec(model) if model else None  # as the controller records it
    records = FleetRecords(index)
    latest = records.decisions(model, limit=1)
    if not latest:
        doc: dict[str, Any] = {"model": model, "desired": 0, "workers": [], "decisions": []}
    else:
        last = latest[0]
        doc = {"model": last["model"], "provider": last.get("provider"),
               "desired": last["desired"], "at": last["at"],
               "workers": [{k: w.get(k) for k in _WORKER_KEYS} for w in last.get("workers", [])],
               "backlog": last.get("backlog", 0), "measured": last.get("measured", {}),
               "decisions": [{k: d.get(k) for k in _DECISION_KEYS}
                             for d in records.decisions(last["model"], limit=history)]}
    if as_json:
        out.print(json.dumps(doc, indent=2))
        return
    if not latest:
        out.print("no controller has run yet: gpufleet controller --provider local")
        return
    measured = doc["measured"]
    age = time.time() - doc["at"]
    out.print(f"[bold]{escape(doc['model'])}[/] on {doc['provider']}: desired "
              f"[bold]{doc['desired']}[/], backlog {doc['backlog']} item(s); "
              f"{measured.get('item_s', 0) * 1000:.1f} ms/item, bootstrap "
              f"{measured.get('bootstrap_s', 0):.0f} s; seen {age:.0f} s ago")
    workers = Table("machine", "state", "capacity", "workers", "GPU busy", "GPU memory")
    for w in doc["workers"]:
        util, memory = w.get("gpu_util_pct"), w.get("gpu_memory_mb")
        workers.add_row(w["id"], w["state"], w["capacity"], str(w.get("pipelines") or "-"),
                        "-" if util is None else f"{util:.0f} %",
                        "-" if memory is None else f"{memory / 1024:.1f} GiB")
    out.print(workers if doc["workers"] else "no workers")
    decisions = Table("when", "desired", "start", "drain", "reasons")
    for d in doc["decisions"]:
        decisions.add_row(time.strftime("%H:%M:%S", time.localtime(d["at"])), str(d["desired"]),
                          str(len(d["start"] or [])), ", ".join(d["drain"] or []),
                          escape("\n".join(d["reasons"] or [])))
    out.print(decisions)
    if age > 60:
        err.print("the controller has not decided for a minute: is it running?")
