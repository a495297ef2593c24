"""`gpufleet worker`: one worker process on this machine."""

from __future__ import annotations

import logging
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
) -> None:
    """Run a worker: bootstrap the model once, then process tasks until SIGTERM."""
    from gpufleet.worker.loop import Worker

    settings, _ = _setup(logging.INFO)
    w = Worker(settings, model=model)
    w.install_signal_handlers()
    w.run(max_idle_s=max_idle)
