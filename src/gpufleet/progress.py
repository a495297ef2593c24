"""Waiting for a job: start local workers if none serve its model, show a progress bar."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gpufleet.config import Settings
from gpufleet.domain import Job
from gpufleet.errors import GpufleetError
from gpufleet.index import Index
from gpufleet.scaler.providers.local import LocalProvider
from gpufleet.sweeper import sweep

_POLL_S = 0.5
_RESTARTS_PER_WORKER = 3
_SWEEP_EVERY_S = 10.0


def wait_for_job(settings: Settings, index: Index, job_id: str, *, workers: int = 1,
                 console: Console | None = None, max_idle_s: float = 30.0) -> Job:
    """Block until the job is finished. Workers started here are drained when it is."""
    console = console or Console(stderr=True)
    job = index.job(job_id)
    provider = None
    if not index.live_workers(model=job.model):
        provider = LocalProvider(settings, model=job.model, max_idle_s=max_idle_s)
        provider.ensure(workers)
    try:
        return _watch(settings, index, job, provider, workers, console)
    finally:
        if provider is not None:
            provider.stop()


def _watch(settings: Settings, index: Index, job: Job, provider: LocalProvider | None, workers: int,
           console: Console) -> Job:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("[red]{task.fields[failed]} failed"),
               TextColumn("{task.fields[rate]} img/s"), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    first_seen: tuple[float, int] | None = None
    swept_at = time.monotonic()
    with Progress(*columns, console=console, transient=False,
                  disable=not console.is_terminal and console.quiet) as bar:
        task = bar.add_task(job.id, total=job.counts.total, failed=0, rate="-")
        while True:
            job = index.job(job.id)
            finished = job.counts.finished
            now = time.monotonic()
            rate = "-"
            if finished and first_seen is None:
                first_seen = (now, finished)
            elif first_seen and now > first_seen[0]:
                rate = f"{(finished - first_seen[1]) / (now - first_seen[0]):.1f}"
            bar.update(task, completed=finished, failed=job.counts.failed, rate=rate)
            if job.state.finished:
                return job
            if now - swept_at >= _SWEEP_EVERY_S:  # no controller may be running
                swept_at = now
                sweep(settings, index, model=job.model)
            if provider is not None:
                provider.ensure(workers)
                if provider.crashes > workers * _RESTARTS_PER_WORKER:
                    raise GpufleetError(f"workers keep crashing; see their logs in "
                                        f"{provider.log_dir}")
            time.sleep(_POLL_S)
