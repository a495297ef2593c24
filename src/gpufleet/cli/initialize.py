"""`gpufleet init`: prepare the backends the settings name, check they answer, say what it did.

Applies the index migrations to GPUFLEET_DB, creates the SQS queue and its
dead-letter queue when GPUFLEET_QUEUE is sqs:// and --create-queues is given,
and checks that the queue, the input and output locations and the cache are
reachable. Safe to run again, and from several machines at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from gpufleet.cache import RedisCache, open_cache
from gpufleet.cli.common import err, out
from gpufleet.config import Settings
from gpufleet.errors import GpufleetError
from gpufleet.redact import redact_url
from gpufleet.store import open_location
from gpufleet.store.base import HealthChecked

app = typer.Typer()

log = logging.getLogger(__name__)


@app.command()
def init(
    create_queues: Annotated[bool, typer.Option(
        "--create-queues", help="Create the SQS queue and its dead-letter queue "
        "(GPUFLEET_QUEUE=sqs://...) if they do not exist.")] = False,
) -> None:
    """Migrate the index, create SQS queues if asked, check every backend answers."""
    logging.basicConfig(level=logging.ERROR, format="%(message)s")  # each step says it all
    settings = Settings.from_env()
    steps: list[tuple[str, Callable[[], str]]] = [
        (f"index {redact_url(settings.db)}", lambda: _migrate(settings)),
        (f"queue {redact_url(settings.queue)}", lambda: _queue(settings, create=create_queues)),
        (f"input {settings.input}", lambda: _location(settings, settings.input)),
        (f"output {settings.output}", lambda: _location(settings, settings.output)),
        (f"cache {redact_url(settings.cache)}", lambda: _cache(settings)),
    ]
    failed = 0
    for what, step in steps:
        try:
            out.print(f"{escape(what)}: {escape(step())}")
        except GpufleetError as exc:
            failed += 1
            message = str(exc).removeprefix(f"{what}: ")
            err.print(f"[red]{escape(what)}: {escape(message)}[/]")
    if failed:
        raise typer.Exit(1)


def _migrate(settings: Settings) -> str:
    from gpufleet.index.migrate import upgrade

    return upgrade(settings.db).describe()


def _queue(settings: Settings, *, create: bool) -> str:
    from gpufleet.queue import open_queue

    done = ""
    if create and urlsplit(settings.queue).scheme == "sqs":
        from gpufleet.queue.sqs import ensure_queue_pair

        ensure_queue_pair(settings.queue, max_receives=settings.tasks.max_receives)
        done = (f"created or found the queue and its dead-letter queue (dead-lettered "
                f"after {settings.tasks.max_receives} receives); ")
    elif create:
        done = "nothing to create (only sqs:// queues are created); "
    queue = open_queue(settings.queue, name=settings.model)
    try:
        depth = queue.depth()
    finally:
        queue.close()
    return (f"{done}reachable: {depth.queued} queued, {depth.in_flight} in flight, "
            f"{depth.dead} dead for model {settings.model}")


def _location(settings: Settings, uri: str) -> str:
    location = open_location(uri, settings=settings)
    if isinstance(location.store, HealthChecked):
        location.store.check()
    else:
        next(iter(location.list()), None)
    return "reachable"


def _cache(settings: Settings) -> str:
    cache = open_cache(settings.cache)
    try:
        if isinstance(cache, RedisCache):
            if not cache.ping():
                raise GpufleetError("unreachable: the API will serve every lookup uncached")
            return "reachable"
        return "in-process LRU, nothing to prepare"
    finally:
        cache.close()
