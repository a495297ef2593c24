"""`gpufleet notify`: completion notifications' targets, their delivery log, and a drain."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gpufleet.api.client import ApiClient
from gpufleet.cli.common import JsonOpt, err, out
from gpufleet.cli.common import setup as _setup
from gpufleet.domain import Job
from gpufleet.durations import parse_duration
from gpufleet.errors import GpufleetError
from gpufleet.index.outbox import Outbox
from gpufleet.notify.dispatcher import Dispatcher
from gpufleet.notify.events import notice
from gpufleet.notify.targets import TargetStore

app = typer.Typer(help="Completion notifications: webhooks and SNS topics told of jobs.",
                  no_args_is_help=True)

EventsOpt = Annotated[str | None, typer.Option(
    help="Events, comma-separated: created, finished, progress (default created,finished).")]
ProgressOpt = Annotated[str | None, typer.Option(
    "--progress-every", help="Send progress at most this often, e.g. 30s (adds progress).")]


def show_secret(target_id: str, secret: str | None) -> None:
    """A webhook's secret, printed once: it is never shown again."""
    if secret:
        err.print(f"signing secret for target {target_id} (shown once, keep it): "
                  f"[bold]{secret}[/]")


def notify_job(job: Job, addresses: Sequence[str], *, remote: ApiClient | None = None,
               store: TargetStore | None = None) -> None:
    """Register `submit --notify`'s targets for the job it made: through the API, or in
    the index."""
    for address in addresses:
        try:
            if remote is not None:
                made = remote.request("POST", "/v1/notify/targets",
                                      json={"address": address, "job": job.id})
                show_secret(made["id"], made.get("secret"))
            elif store is not None:
                target = store.add(address, tenant=job.tenant, job_id=job.id)
                show_secret(target.id, target.secret)
                notice(store.index, Outbox(store.index), [target])  # created, now
        except GpufleetError as exc:
            raise GpufleetError(f"job {job.id} was created, but no notifications go to "
                                f"{address}: {exc}") from exc


@app.command("add")
def add(
    address: Annotated[str, typer.Argument(
        help="An https:// webhook URL or an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC).")],
    job: Annotated[str | None, typer.Option(help="Only this job's events.")] = None,
    tenant: Annotated[str, typer.Option(
        help="The tenant whose jobs (created from now on) it hears of.")] = "default",
    events: EventsOpt = None,
    progress_every: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a target; a webhook's signing secret is printed once."""
    settings, index = _setup()
    progress_s = parse_duration(progress_every, what="--progress-every") if progress_every \
        else None
    if job is not None:
        tenant = index.job(job).tenant  # JobNotFound before a target for nothing
    target = TargetStore(index, settings.notify).add(address, tenant=tenant, job_id=job,
                                                     events=events, progress_s=progress_s)
    if as_json:
        out.print(json.dumps({**target.to_json(), "secret": target.secret}))
        return
    out.print(target.id)
    show_secret(target.id, target.secret)


@app.command("list")
def list_targets(as_json: JsonOpt = False) -> None:
    """Every target (without secrets)."""
    settings, index = _setup()
    targets = TargetStore(index, settings.notify).listed()
    if as_json:
        out.print(json.dumps([t.to_json() for t in targets], indent=2))
        return
    table = Table("id", "kind", "address", "tenant", "job", "events")
    for t in targets:
        events = ",".join(t.events) + (f" every {t.progress_s:g}s" if t.progress_s else "")
        table.add_row(t.id, t.kind, escape(t.address), t.tenant, t.job_id or "*", events)
    out.print(table if targets else "no notification targets")


@app.command("remove")
def remove(target: Annotated[str, typer.Argument(help="The target's id.")]) -> None:
    """Remove a target; its undelivered events fail (target removed)."""
    settings, index = _setup()
    TargetStore(index, settings.notify).remove(target)
    out.print(f"removed {target}")


@app.command("log")
def delivery_log(
    target: Annotated[str | None, typer.Option(help="Only this target's.")] = None,
    job: Annotated[str | None, typer.Option(help="Only this job's.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="The latest this many.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Delivery attempts, newest last, and how many events wait."""
    _settings, index = _setup()
    outbox = Outbox(index)
    attempts = outbox.log(target_ids=[target] if target else None, job_id=job, limit=limit)
    if as_json:
        out.print(json.dumps([dataclasses.asdict(a) for a in attempts], indent=2))
        return
    table = Table("at", "target", "job", "event", "try", "result", "ms")
    for a in attempts:
        result = "ok" if a.ok else escape(a.error or f"HTTP {a.status}")
        table.add_row(time.strftime("%H:%M:%S", time.localtime(a.at)), a.target_id, a.job_id,
                      a.event, str(a.attempt), result, f"{a.ms or 0:.0f}")
    out.print(table if attempts else "no delivery attempts")
    err.print(f"{outbox.pending()} event(s) pending")


@app.command("run")
def run(budget: Annotated[str, typer.Option(
        help="Stop after this long even if events are still due.")] = "60s") -> None:
    """Notice events and deliver what is due now (the controller does this on its own)."""
    settings, index = _setup()
    with Dispatcher(settings, index) as dispatcher:
        done = dispatcher.drain(budget_s=parse_duration(budget, what="--budget"))
    out.print(done.describe() + f"; {Outbox(index).pending()} pending")
