"""`gpufleet worker`: a worker on this machine, or one per GPU of it (`--gpus`)."""

from __future__ import annotations

import gc
import logging
import os
from typing import Annotated

import typer

from gpufleet.cli.common import ModelOpt
from gpufleet.cli.common import setup as _setup

app = typer.Typer()


@app.command()
def worker(
    model: ModelOpt = None,
    max_idle: Annotated[float | None, typer.Option(
        "--max-idle", help="Exit after this many seconds without work (default: never).")] = None,
    gpus: Annotated[str | None, typer.Option(
        "--gpus", help="One worker per GPU, as one machine of the fleet: all (those "
        "CUDA_VISIBLE_DEVICES leaves, else every GPU NVML sees), or indexes or UUIDs, "
        "e.g. 0,1. Default: one worker, on the device its model picks.")] = None,
    machine_gpus: Annotated[int | None, typer.Option(
        "--machine-gpus", min=1, hidden=True,
        help="Set by --gpus: this worker is one of that many on its machine.")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=0, max=65535, help="Serve Prometheus metrics on this port, at "
        "/metrics (default: GPUFLEET_METRICS_PORT; 0: off). With --gpus, the worker of the "
        "first GPU takes this port, the next one port + 1, and so on.")] = None,
) -> None:
    """Run a worker: bootstrap the model once, then process tasks until SIGTERM (a drain)."""
    settings, _ = _setup(logging.INFO)
    if gpus is not None:
        from gpufleet.models.base import canonical_spec
        from gpufleet.worker.machine import Machine, resolve_gpus

        machine = Machine(settings, resolve_gpus(gpus, visible=os.environ.get(
            "CUDA_VISIBLE_DEVICES")), model=canonical_spec(model or settings.model),
            max_idle_s=max_idle, metrics_port=settings.worker.metrics_port
            if metrics_port is None else metrics_port)
        machine.install_signal_handlers()
        raise typer.Exit(machine.run())
    from gpufleet.worker.loop import Worker

    w = Worker(settings, model=model, machine_gpus=machine_gpus, metrics_port=metrics_port)
    w.install_signal_handlers()
    _quiet_collector()
    w.run(max_idle_s=max_idle)


# Objects the cyclic collector lets be made before a pass over its youngest generation.
# Python's 700 is a few items' worth here: a write batch's outcomes, results, tags and rows
# (tens of thousands of objects, freed by reference count once written) were promoted and
# traversed again and again. Under perf, one no-op worker over 40,000 items spent 6.4 % of
# its CPU in the collector with the defaults, 1.0 % with this and start-up's objects frozen.
_YOUNG_OBJECTS = 50_000


def _quiet_collector() -> None:
    """What exists now (modules, settings, connections) lives as long as the process: keep
    it out of the collector's passes, and let a batch's short-lived objects die young. (A
    cycle of garbage waits for 50,000 more objects: a moment in a busy worker.)"""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_YOUNG_OBJECTS, middle, old)
