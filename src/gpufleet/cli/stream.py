"""`gpufleet stream`: a stream's object keys and S3 events become rolling jobs."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from types import FrameType
from typing import Annotated

import typer

from gpufleet.cli.common import JsonOpt, ModelOpt, PreprocessOpt, ResultsOpt, out
from gpufleet.cli.common import setup as _setup
from gpufleet.models.base import canonical_spec

app = typer.Typer()


@app.command()
def stream(
    source: Annotated[str, typer.Option(
        "--source", help="Where records come from: kinesis://STREAM, "
        "redis://HOST:PORT/DB?stream=NAME, nats://HOST:PORT/STREAM, sqs://QUEUE or "
        "kafka://BROKER:PORT/TOPIC (untested).")],
    input: Annotated[str | None, typer.Option(
        help="Where bare keys live (S3 events and s3:// URIs say it themselves).")] = None,
    model: ModelOpt = None,
    window_items: Annotated[int, typer.Option(
        min=1, help="A window (one job) closes at this many items...")] = 1000,
    window_s: Annotated[float, typer.Option(
        min=0.1, help="...or this many seconds after its first record, whichever first.")
    ] = 10.0,
    max_backlog: Annotated[int, typer.Option(
        min=0, help="Stop reading while the model has this many items pending (0: never).")
    ] = 100_000,
    keep_events_days: Annotated[float, typer.Option(
        min=0.01, help="Days the index keeps each item's event, to drop a record read "
        "again (after a crash before its ack, an S3 event notified twice).")] = 7.0,
    consumer: Annotated[str | None, typer.Option(
        help="This reader's name in a Redis consumer group (default: the host name).")
    ] = None,
    tenant: Annotated[str, typer.Option(help="The tenant the jobs belong to.")] = "default",
    preprocess: PreprocessOpt = None,
    results: ResultsOpt = "objects",
    exit_idle: Annotated[float, typer.Option(
        min=0, help="Exit after this many seconds with nothing read (0: run until stopped).")
    ] = 0.0,
    json_output: JsonOpt = False,
) -> None:
    """Consume a stream of object keys or S3 events into jobs, one per window."""
    from gpufleet.preprocess.chain import canonical_chain
    from gpufleet.streams.consumer import JobTemplate, StreamConsumer, WindowRules, run
    from gpufleet.streams.source import open_source

    settings, index = _setup(logging.INFO)
    spec = canonical_spec(model or settings.model)
    job = JobTemplate(model=spec, tenant=tenant, preprocess=canonical_chain(preprocess),
                      results=results)  # a bad chain or mode: one line, before reading
    rules = WindowRules(max_items=window_items, max_s=window_s, max_backlog=max_backlog,
                        keep_events_s=keep_events_days * 86400)
    name = consumer or socket.gethostname()

    def make() -> StreamConsumer:
        return StreamConsumer(settings, index, open_source(source, index=index, consumer=name),
                              job=job, input=input, rules=rules)

    make().source.close()  # a bad URL or a missing stream is one clear line, at once
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("%s: closing the window and stopping",
                                         signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stats = run(make, stop=stop, idle_exit_s=exit_idle)
    summary = {"records": stats.records, "items": stats.items, "jobs": stats.jobs,
               "duplicates": stats.duplicates, "rejected": stats.rejected,
               "job_ids": stats.job_ids}
    if json_output:
        out.print_json(data=summary)
    else:
        out.print(f"{stats.records} record(s): {stats.items} item(s) in {stats.jobs} job(s), "
                  f"{stats.duplicates} duplicate(s), {stats.rejected} rejected")
