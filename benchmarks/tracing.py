"""What traces cost the worker: the embedded pipeline untraced, then traced, in one run.

N small objects and a model that costs nothing (``synthetic?item_ms=0``), so what
is measured is the bookkeeping around it, where spans add theirs. Each way runs a
fresh job in a fresh GPUFLEET_HOME through a real Pipeline in this process:

- untraced: no provider (the default): no span observer, task messages without a trace;
- traced: the SDK's provider with a batching processor, spans handed to an exporter
  that drops them (what is measured is making them, not a collector's speed).

The two take turns, a few rounds. Prints items/s of each (from the first item started
to the last written, read from the index), best of the rounds, and the ratio traced /
untraced.

Usage: python benchmarks/tracing.py [--items 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from gpufleet import tracing
from gpufleet.config import Settings
from gpufleet.index import Index
from gpufleet.jobs import JobRequest, create_job
from gpufleet.models import load_tagger
from gpufleet.queue import open_queue
from gpufleet.worker.observer import Observers
from gpufleet.worker.pipeline import Pipeline
from gpufleet.worker.spans import span_observers

MODEL = "synthetic?item_ms=0"


class Dropped(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def run(items: int) -> float:
    """items/s of one job through a pipeline, traced or not as tracing is now set up."""
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-") as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        keys = [f"item-{i:06d}.bin" for i in range(items)]
        for i, key in enumerate(keys):
            (root / "in" / key).write_bytes(f"object {i}".encode() * 20)
        settings = Settings.from_env({"GPUFLEET_HOME": str(root / "home")})
        index = Index(settings.db)
        job = create_job(settings, index, JobRequest(items=keys, model=MODEL,
                                                     input=(root / "in").as_uri() + "/"))
        Pipeline(tagger=load_tagger(MODEL, settings), queue=open_queue(settings.queue, name=MODEL),
                 index=index, settings=settings, worker_id="bench",
                 observer=Observers(span_observers("bench"))).run(
            stop=threading.Event(), max_idle_s=0.5)
        with index.engine.connect() as conn:
            first, last, done = conn.exec_driver_sql(
                "SELECT min(started_at), max(finished_at), count(*) FROM items"
                " WHERE job_id = ? AND status = 'done'", (job.id,)).one()
        index.close()
        assert done == items, f"{done} of {items} done"
        return float(items / (last - first))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    exporter = Dropped()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1 << 16))
    untraced, traced = [], []
    for _ in range(args.rounds):  # taken in turns: a shared machine's speed drifts
        tracing.use(None)
        untraced.append(run(args.items))
        tracing.use(provider)
        traced.append(run(args.items))
    tracing.use(None)
    provider.shutdown()
    print(f"untraced: {max(untraced):8.0f} items/s (best of {args.rounds}; "
          f"{', '.join(f'{r:.0f}' for r in untraced)})")
    print(f"traced:   {max(traced):8.0f} items/s (best of {args.rounds}; "
          f"{', '.join(f'{r:.0f}' for r in traced)}; {exporter.spans} spans)")
    print(f"ratio traced / untraced: {max(traced) / max(untraced):.2f}")


if __name__ == "__main__":
    main()
