"""The gpufleet command line: submit jobs, run workers, read results."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from gpufleet import cli_remote
from gpufleet import demo as demo_photos
from gpufleet.api.client import ApiClient
from gpufleet.cli_common import JsonOpt, ModelOpt, err, out
from gpufleet.cli_common import setup as _setup
from gpufleet.cli_remote import ApiOpt, connect
from gpufleet.domain import Job, JobState
from gpufleet.durations import parse_duration
from gpufleet.errors import GpufleetError
from gpufleet.index import Index
from gpufleet.jobs import submit as submit_job
from gpufleet.manifest import MAX_PRIORITY
from gpufleet.progress import WaitInterrupted, wait_for_job
from gpufleet.queue import open_queue

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
dlq_app = typer.Typer(help="Dead-lettered tasks: list them, put them back.",
                      no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

@app.command()
def submit(
    source: Annotated[str, typer.Argument(
        help="A manifest (.json, .jsonl, .csv, .txt), a folder of images, or "
        "s3://bucket/prefix/ (every object under it).")],
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
    as_json: JsonOpt = False,
    api: ApiOpt = None,
) -> None:
    """Create a job from a manifest or a folder of images; print its id."""
    deadline_s = parse_duration(deadline, what="--deadline") if deadline else None
    if remote := connect(api):  # through the API: the same job, the same output
        job = cli_remote.submit(remote, source, input=input, output=output, model=model,
                                deadline_s=deadline_s, priority=priority)
    else:
        settings, index = _setup()
        job = submit_job(settings, index, source, input=input, output=output, model=model,
                         deadline_s=deadline_s, priority=priority)
    if not wait:
        out.print(json.dumps(job.summary()) if as_json else job.id)
        return
    err.print(f"job [bold]{job.id}[/]: {job.counts.total} item(s)")
    try:
        job = (cli_remote.wait(remote, job.id) if remote else
               wait_for_job(settings, index, job.id, workers=workers))
    except WaitInterrupted as stopped:
        _stopped_waiting(remote or index, stopped)
    if as_json:
        out.print(json.dumps(job.summary()))
    else:
        c = job.counts
        out.print(f"{job.id} {job.state.value}: {c.done} done, {c.failed} failed"
                  + (f", {c.cancelled} cancelled" if c.cancelled else "") + f" of {c.total}")
    if job.counts.failed and not as_json:
        err.print(f"see failures: gpufleet results {job.id}")
    if job.state is not JobState.SUCCEEDED:
        raise SystemExit(1)


def _stopped_waiting(source: ApiClient | Index, stopped: WaitInterrupted) -> NoReturn:
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
    table = Table("job", "state", "total", "done", "failed", "cancelled", "pending", "model",
                  "created", "worker-s", "cost")
    for j in jobs:
        table.add_row(j.id, _state(j), *(str(n) for n in (
            j.counts.total, j.counts.done, j.counts.failed, j.counts.cancelled,
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
            sys.stdout.write(json.dumps({k: row[k] for k in ("key", "status", "tags", "error")})
                             + "\n")
        return
    table = Table("key", "status", "tags", "error")
    for row in rows:
        tags = ", ".join(f"{t['label']} {t['score']:.2f}" for t in row["tags"][:3])
        table.add_row(escape(row["key"]), row["status"], escape(tags), escape(row["error"] or ""))
    out.print(table)


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


@dlq_app.command("list")
def dlq_list(as_json: JsonOpt = False) -> None:
    """Dead-lettered tasks with their last error."""
    settings, index = _setup()
    letters = []
    for model in index.models():
        queue = open_queue(settings.queue, name=model)
        letters += [(model, d) for d in queue.dead_letters()]
        queue.close()
    if as_json:
        out.print(json.dumps([_letter(m, d) for m, d in letters], indent=2))
        return
    table = Table("task", "job", "items", "receives", "model", "last error")
    for model, d in letters:
        doc = _letter(model, d)
        table.add_row(d.id, doc["job"], str(doc["items"]), str(d.receives), escape(model),
                      escape(d.error))
    out.print(table if letters else "no dead-lettered tasks")


def _letter(model: str, d: Any) -> dict[str, Any]:
    try:
        body = json.loads(d.body)
        job, items = body.get("job"), len(body.get("keys", []))
    except (ValueError, AttributeError):
        job, items = None, 0
    return {"id": d.id, "job": job, "items": items, "receives": d.receives, "model": model,
            "error": d.error, "died_at": d.died_at}


@dlq_app.command("redrive")
def dlq_redrive() -> None:
    """Put every dead-lettered task back on its queue."""
    settings, index = _setup()
    total = 0
    for model in index.models():
        queue = open_queue(settings.queue, name=model)
        total += queue.redrive()
        queue.close()
    out.print(f"redrove {total} task(s)")


@app.command()
def demo(
    model: ModelOpt = None,
    workers: Annotated[int, typer.Option(min=1, help="Local workers to start.")] = 1,
) -> None:
    """Tag sample photos that ship with scikit-image, end to end, and show the tags."""
    settings, index = _setup()
    folder = demo_photos.write_photos(settings.home / "demo-photos")
    err.print(f"tagging {len(list(folder.iterdir()))} sample photos from {folder}")
    started = time.monotonic()
    job = submit_job(settings, index, folder, model=model)
    try:
        job = wait_for_job(settings, index, job.id, workers=workers)
    except WaitInterrupted as stopped:
        _stopped_waiting(index, stopped)
    elapsed = time.monotonic() - started
    table = Table("image", "top tags", title=f"job {job.id}")
    for row in index.iter_results(job.id):
        tags = "\n".join(f"{t['score']:.2f}  {t['label']} ({t['id']})" for t in row["tags"][:3])
        table.add_row(escape(row["key"]), escape(tags or f"failed: {row['error']}"))
    out.print(table)
    c = job.counts
    out.print(f"{job.state.value}: {c.done} done, {c.failed} failed of {c.total} in "
              f"{elapsed:.1f} s ({c.total / elapsed:.1f} images/s, model bootstrap included)")
    out.print(f"results: {job.output}{job.id}/   (gpufleet results {job.id})")


# Command groups that live in their own modules register here, one line each.
import gpufleet.cli_api  # noqa: E402  api, keys
import gpufleet.cli_fleet_plan  # noqa: E402  plan, simulate
import gpufleet.cli_init  # noqa: E402,F401  init
from gpufleet import cli_fleet  # noqa: E402,F401  controller, fleet


def main() -> None:
    try:
        app()
    except GpufleetError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
