"""What every command module shares: consoles, common options, set-up."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from rich.console import Console

from gpufleet import logs
from gpufleet.config import Settings
from gpufleet.index import Index

# Piped output is not cut to 80 columns: it is read by programs and pagers.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False)

ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Model spec: efficientnet-lite0, synthetic?item_ms=10, or "
    "package.module:attr. Default: GPUFLEET_MODEL or efficientnet-lite0.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
PreprocessOpt = Annotated[str | None, typer.Option(
    metavar="SPEC", help="Steps run on each image before the model, e.g. "
    "'exif,min-size=64,max-size=8000,grayscale' (see README: Preprocessing).")]
ResultsOpt = Annotated[str, typer.Option(
    help="objects: one result JSON per item; shards: one JSONL object per task under "
    "<output>/<job>/shards/ (the index records every item either way).")]


def setup(level: int = logging.WARNING) -> tuple[Settings, Index]:
    """Settings, logs (the command's level unless GPUFLEET_LOG_LEVEL says) and the index."""
    settings = Settings.from_env()
    logs.configure(level=settings.log_level or level, fmt=settings.log_format, console=err)
    return settings, Index(settings.db)


