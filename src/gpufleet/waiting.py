"""Waiting for a job: start local workers if none serve its model, show a progress bar."""

from __future__ import annotations

import signal
import threading
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

from gpufleet.autoscale.providers.local import LocalProvider
from gpufleet.config import Settings
from gpufleet.domain import Job, WorkerState
from gpufleet.errors import GpufleetError
from gpufleet.index import Index
from gpufleet.sweeper import sweep

_POLL_S = 0.5
_RESTARTS_PER_WORKER = 3
_SWEEP_EVERY_S = 10.0
WAIT_GRACE_S = 2.0  # workers started by --wait hand back what they hold this soon on Ctrl-C
SECOND_CTRL_C_S = 3.0  # how long a second Ctrl-C may come to cancel the job


class WaitInterrupted(Exception):
    """Ctrl-C while waiting: the local workers were stopped, the job goes on unless cancel."""

    def __init__(self, job_id: str, *, cancel: bool) -> None:
        super().__init__(f"stopped waiting for job {job_id}")
        self.job_id, self.cancel = job_id, cancel


def wait_for_job(settings: Settings, index: Index, job_id: str, *, workers: int = 1,
                 console: Console | None = None, max_idle_s: float = 30.0) -> Job:
    """Block until the job is finished. Workers started here are drained when it is.

    On Ctrl-C the workers started here hand their tasks back within WAIT_GRACE_S and stop,
    and WaitInterrupted is raised; a second Ctrl-C meanwhile asks to cancel the job.
    """
    console = console or Console(stderr=True)
    job = index.job(job_id)
    provider = None
    if not index.live_workers(model=job.model):
        # In their own session (Ctrl-C reaches only us: we stop them) and with a short grace.
        grace_s = min(settings.worker.drain_grace_s, WAIT_GRACE_S)
        provider = LocalProvider(settings, model=job.model, max_idle_s=max_idle_s,
                                 env={"GPUFLEET_DRAIN_GRACE_S": str(grace_s)},
                                 own_session=True)
        provider.ensure(workers)
    try:
        return _watch(settings, index, job, provider, workers, console)
    except KeyboardInterrupt:
        cancel = second_interrupt(console, provider)
        raise WaitInterrupted(job_id, cancel=cancel) from None
    finally:
        if provider is not None:
            provider.stop()


def second_interrupt(console: Console, provider: LocalProvider | None) -> bool:
    """After a Ctrl-C: stop the local workers, saying so; True if Ctrl-C came again
    meanwhile (the window lasts at least SECOND_CTRL_C_S)."""
    again = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: again.set())
    try:
        console.print("[yellow]interrupted:[/] stopping the local workers (their unfinished "
                      "tasks go back to the queue); press Ctrl-C again to cancel the job")
        deadline = time.monotonic() + SECOND_CTRL_C_S
        if provider is not None:
            provider.stop(timeout_s=WAIT_GRACE_S + 5)
        again.wait(max(0.0, deadline - time.monotonic()))
    finally:
        signal.signal(signal.SIGINT, previous)
    return again.is_set()


def phase(index: Index, job: Job) -> str:
    """What a job is waiting for, as its progress bar says: workers to start, the model to
    load, its turn, or nothing (running; then finished)."""
    if job.state.finished:
        return job.state.value
    if job.started_at is not None or job.counts.finished:
        return "running"
    states = {w.state for w in index.live_workers(model=job.model)}
    if not states:
        return "starting workers"
    if states == {WorkerState.BOOTING}:
        return "loading the model"
    return "waiting for a worker"  # those up are busy with other jobs


def _watch(settings: Settings, index: Index, job: Job, provider: LocalProvider | None, workers: int,
           console: Console) -> Job:
    columns = (TextColumn("[bold]{task.description}"), TextColumn("{task.fields[phase]}"),
               BarColumn(), MofNCompleteColumn(),
               TextColumn("[red]{task.fields[failed]} failed"),
               TextColumn("{task.fields[skipped]} skipped"),
               TextColumn("{task.fields[rate]} img/s"), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    first_seen: tuple[float, int] | None = None
    swept_at = time.monotonic()
    with Progress(*columns, console=console, transient=False,
                  disable=not console.is_terminal and console.quiet) as bar:
        task = bar.add_task(job.id, total=job.counts.total, failed=0, skipped=0, rate="-",
                            phase=phase(index, job))
        while True:
            job = index.job(job.id)
            finished = job.counts.finished
            now = time.monotonic()
            rate = "-"
            if finished and first_seen is None:
                first_seen = (now, finished)
            elif first_seen and now > first_seen[0]:
                rate = f"{(finished - first_seen[1]) / (now - first_seen[0]):.1f}"
            bar.update(task, completed=finished, failed=job.counts.failed,
                       skipped=job.counts.skipped, rate=rate,
                       phase=phase(index, job))
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
