"""Commands on jobs: submit, status, cancel, results."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from gpufleet.api.client import ApiClient
from gpufleet.cli import remote as cli_remote
from gpufleet.cli.common import JsonOpt, ModelOpt, PreprocessOpt, ResultsOpt, err, out
from gpufleet.cli.common import setup as _setup
from gpufleet.cli.notify import notify_job
from gpufleet.cli.remote import ApiOpt, connect
from gpufleet.domain import Job, JobState
from gpufleet.durations import parse_duration
from gpufleet.errors import GpufleetError
from gpufleet.index import Index
from gpufleet.manifest import MAX_PRIORITY
from gpufleet.notify.dispatcher import Dispatcher
from gpufleet.notify.targets import TargetStore, kind_of
from gpufleet.sources import submit_source
from gpufleet.waiting import WaitInterrupted, wait_for_job

app = typer.Typer()
_NOTIFY_BUDGET_S = 30.0  # what --wait spends delivering notifications at the end

@app.command()
def submit(
    source: Annotated[str, typer.Argument(
        help="A manifest (.json, .jsonl, .csv, .txt, each possibly .gz; or an S3 Inventory "
        "manifest.json), a folder of images, s3://bucket/prefix/ (every object under it), "
        "or s3://bucket/path/manifest.json.")],
    input: Annotated[str | None, typer.Option(
        help="Where the manifest's keys live (default: the manifest's folder).")] = None,
    output: Annotated[str | None, typer.Option(
        help="Where result JSON goes (default: GPUFLEET_HOME/buckets/results/).")] = None,
    model: ModelOpt = None,
    wait: Annotated[bool, typer.Option(
        help="Wait for the job, starting local workers if none is running; exit 1 unless "
        "it succeeds. Ctrl-C stops waiting and the local workers (their tasks go back to "
        "the queue) and leaves the job queued; a second Ctrl-C within a few seconds "
        "cancels the job.")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Local workers to start with --wait.")] = 1,
    deadline: Annotated[str | None, typer.Option(
        help="Finish within this long, e.g. 30m (default: GPUFLEET_TARGET_DRAIN_S).")] = None,
    priority: Annotated[int | None, typer.Option(
        min=-MAX_PRIORITY, max=MAX_PRIORITY,
        help="Higher first when deadlines tie (default 0).")] = None,
    include: Annotated[list[str] | None, typer.Option(
        "--include", metavar="PATTERN",
        help="Only names matching this shell pattern, any case (e.g. '*.jpg'); repeat for "
        "more. For a folder or s3:// prefix: other files are left out, not failed.")] = None,
    preprocess: PreprocessOpt = None,
    results: ResultsOpt = "objects",
    notify: Annotated[list[str] | None, typer.Option(
        "--notify", metavar="URL_OR_ARN",
        help="Tell this https:// webhook or SNS topic when the job is created and finished; "
        "repeat for more (see gpufleet notify).")] = None,
    as_json: JsonOpt = False,
    api: ApiOpt = None,
) -> None:
    """Create a job from a manifest, a folder of images or a tar shard; print its id."""
    deadline_s = parse_duration(deadline, what="--deadline") if deadline else None
    if (remote := connect(api)) and include:
        raise typer.BadParameter("narrows a folder or an s3:// prefix submitted here, not a "
                                 "job sent through the API", param_hint="--include")
    if remote:  # through the API: the same job, the same output
        job = cli_remote.send_job(remote, source, input=input, output=output, model=model,
                                deadline_s=deadline_s, priority=priority,
                                preprocess=preprocess, results=results)
        notify_job(job, notify or (), remote=remote)
    else:
        settings, index = _setup()
        for address in notify or ():  # refused before a job is made
            kind_of(address, settings.notify)
        job = submit_source(settings, index, source, input=input, output=output, model=model,
                            deadline_s=deadline_s, priority=priority, include=include or (),
                            preprocess=preprocess, results=results)
        notify_job(job, notify or (), store=TargetStore(index, settings.notify))
    if not wait:
        out.print(json.dumps(job.summary()) if as_json else job.id)
        return
    err.print(f"job [bold]{job.id}[/]: {job.counts.total} item(s)")
    try:
        job = (cli_remote.wait(remote, job.id) if remote else
               wait_for_job(settings, index, job.id, workers=workers))
    except WaitInterrupted as stopped:
        stopped_waiting(remote or index, stopped)
    if not remote:  # the job's events, now rather than at the controller's next tick
        with Dispatcher(settings, index) as dispatcher:
            sent = dispatcher.drain(budget_s=_NOTIFY_BUDGET_S)
        if sent.delivered or sent.retried or sent.failed:
            err.print(f"notifications: {sent.describe()}")
    if as_json:
        out.print(json.dumps(job.summary()))
    else:
        c = job.counts
        out.print(f"{job.id} {job.state.value}: {c.done} done, {c.failed} failed"
                  + (f", {c.skipped} skipped" if c.skipped else "")
                  + (f", {c.cancelled} cancelled" if c.cancelled else "") + f" of {c.total}")
    if job.counts.failed and not as_json:
        err.print(f"see failures: gpufleet results {job.id}")
    if job.state is not JobState.SUCCEEDED:
        raise SystemExit(1)


def stopped_waiting(source: ApiClient | Index, stopped: WaitInterrupted) -> NoReturn:
    job_id = stopped.job_id
    if stopped.cancel:
        c = source.cancel_job(job_id).counts
        err.print(f"cancelled job {job_id}: {c.done} done, {c.failed} failed, "
                  f"{c.cancelled} cancelled of {c.total}")
    else:
        err.print(f"job {job_id} goes on: its tasks stay queued for any worker "
                  f"(gpufleet status {job_id}; gpufleet cancel {job_id} to stop it)")
    raise SystemExit(130)


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(help="A job id; every job when omitted.")] = None,
    as_json: JsonOpt = False,
    api: ApiOpt = None,
) -> None:
    """State and counts of one job, or of every job (newest last)."""
    source = connect(api) or _setup()[1]  # the API's jobs of the key's tenant, or the index
    jobs = [source.job(job)] if job else source.jobs()
    if as_json:
        docs = [j.summary() for j in jobs]
        out.print(json.dumps(docs[0] if job else docs, indent=2))
        return
    table = Table("job", "state", "total", "done", "failed", "skipped", "cancelled", "pending",
                  "model", "created", "worker-s", "cost")
    for j in jobs:
        table.add_row(j.id, _state(j), *(str(n) for n in (
            j.counts.total, j.counts.done, j.counts.failed, j.counts.skipped, j.counts.cancelled,
            j.counts.pending)),
            escape(j.model), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j.created_at)),
            f"{j.usage.worker_s:.0f}", f"${j.usage.cost:.4f}")
    out.print(table)


@app.command()
def cancel(
    job: Annotated[str, typer.Argument(help="The job id.")],
    as_json: JsonOpt = False,
    api: ApiOpt = None,
) -> None:
    """Cancel a job: its pending items end cancelled and its queued tasks are dropped.

    Items already running finish. A finished job cannot be cancelled.
    """
    source = connect(api) or _setup()[1]
    cancelled = source.cancel_job(job)
    if as_json:
        out.print(json.dumps(cancelled.summary()))
        return
    c = cancelled.counts
    out.print(f"{cancelled.id} cancelled: {c.done} done, {c.failed} failed, "
              f"{c.cancelled} cancelled of {c.total}")


def _state(job: Job) -> str:
    colour = {"succeeded": "green", "partial": "yellow", "failed": "red",
              "cancelled": "bright_black"}.get(job.state.value)
    return f"[{colour}]{job.state.value}[/]" if colour else job.state.value


@app.command()
def results(
    job: Annotated[str, typer.Argument(help="The job id.")],
    tag: Annotated[str | None, typer.Option(
        help="Only items tagged with this label or id (e.g. 'tabby' or n02123045).")] = None,
    format: Annotated[str, typer.Option(
        "--format", "-f", help="table or jsonl (one JSON object per item).")] = "table",
    api: ApiOpt = None,
) -> None:
    """Each item's status, tags (best first) and error."""
    if format not in ("table", "jsonl"):
        raise GpufleetError(f"--format must be table or jsonl, not {format!r}")
    source = connect(api) or _setup()[1]
    source.job(job)  # JobNotFound before an empty listing
    rows = source.iter_results(job, tag=tag)
    if format == "jsonl":
        for row in rows:
            doc = row.to_json()
            sys.stdout.write(json.dumps({k: doc[k] for k in ("key", "status", "tags", "error")})
                             + "\n")
        return
    table = Table("key", "status", "tags", "error")
    for row in rows:
        tags = ", ".join(f"{t.label} {t.score:.2f}" for t in row.tags[:3])
        table.add_row(escape(row.key), row.status.value, escape(tags), escape(row.error or ""))
    out.print(table)
