"""The export command: a job's results as a few JSONL, CSV or Parquet files."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gpufleet.cli.common import JsonOpt, err, out
from gpufleet.cli.common import setup as _setup
from gpufleet.export import FORMATS, export_job
from gpufleet.export.files import PART_ROWS
from gpufleet.export.formats import check_format
from gpufleet.store import open_location

app = typer.Typer()


@app.command()
def export(
    job: Annotated[str, typer.Argument(help="The job id.")],
    output: Annotated[str, typer.Option(
        "--output", "-o", help="A folder (a path or file:///...) or an s3://bucket/prefix/ "
        "the files are written to, as <job>-00000.<format>, <job>-00001...")],
    format: Annotated[str, typer.Option(
        "--format", "-f", help=f"{', '.join(FORMATS)}.")] = "jsonl",
    part_rows: Annotated[int, typer.Option(
        min=1, help="At most this many rows (items) per file.")] = PART_ROWS,
    as_json: JsonOpt = False,
) -> None:
    """Export a running or finished job's results: one row per item (key, status, tags
    with scores, error, result object), pending items included as pending."""
    check_format(format)
    settings, index = _setup()
    location = open_location(output, settings=settings)
    parts = export_job(index, job, location, fmt=format, part_rows=part_rows)
    if as_json:
        out.print(json.dumps({"job": job, "format": format, "files": parts}))
        return
    for part in parts:
        out.print(part)
    err.print(f"exported job {job} to {len(parts)} {format} file(s)")
