"""`gpufleet demo`: tag the sample photos end to end on the embedded default."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gpufleet import demo as demo_photos
from gpufleet.cli.common import ModelOpt, err, out
from gpufleet.cli.common import setup as _setup
from gpufleet.cli.jobs import stopped_waiting
from gpufleet.sources import submit_source
from gpufleet.waiting import WaitInterrupted, wait_for_job

app = typer.Typer()


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
    job = submit_source(settings, index, folder, model=model)
    try:
        job = wait_for_job(settings, index, job.id, workers=workers)
    except WaitInterrupted as stopped:
        stopped_waiting(index, stopped)
    elapsed = time.monotonic() - started
    table = Table("image", "top tags", title=f"job {job.id}")
    for row in index.iter_results(job.id):
        tags = "\n".join(f"{t.score:.2f}  {t.label} ({t.id})" for t in row.tags[:3])
        table.add_row(escape(row.key), escape(tags or f"failed: {row.error}"))
    out.print(table)
    c = job.counts
    out.print(f"{job.state.value}: {c.done} done, {c.failed} failed of {c.total} in "
              f"{elapsed:.1f} s ({c.total / elapsed:.1f} images/s, model bootstrap included)")
    out.print(f"results: {job.output}{job.id}/   (gpufleet results {job.id})")
