"""The CLI through the API: ``--api URL`` (or GPUFLEET_API) with GPUFLEET_API_KEY.

submit, status and results build the same Job objects and rows from the
API's answers as from the index, so they print the same output.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gpufleet.api.client import ApiClient
from gpufleet.config import Settings
from gpufleet.domain import Job
from gpufleet.errors import ManifestError
from gpufleet.jobs import JobRequest
from gpufleet.manifest import FORMATS, names_a_manifest, open_manifest
from gpufleet.waiting import WaitInterrupted, second_interrupt

ApiOpt = Annotated[str | None, typer.Option(
    "--api", help="Go through the gpufleet API at this URL (default: GPUFLEET_API); "
    "the key comes from GPUFLEET_API_KEY.")]
_POLL_S = 0.5


def connect(api: str | None) -> ApiClient | None:
    """A client if --api or GPUFLEET_API names an API, else None (work on the index)."""
    settings = Settings.from_env()
    url = api or settings.api
    return ApiClient(url, settings.api_key) if url else None


def send_job(client: ApiClient, source: str, *, input: str | None, output: str | None,
           model: str | None, deadline_s: float | None, priority: int | None,
           preprocess: str | None = None, results: str = "objects") -> Job:
    """A manifest location is read by the server; a local manifest file is sent as items."""
    body: dict[str, Any] = {"input": input, "output": output, "model": model,
                            "deadline_s": deadline_s, "priority": priority,
                            "preprocess": preprocess,
                            "results": None if results == "objects" else results}
    path = Path(source)
    if urlsplit(source).scheme in ("s3", "file") and names_a_manifest(urlsplit(source).path):
        body["manifest"] = source
    elif path.is_file():
        with open_manifest(path) as manifest:
            request = JobRequest(manifest=manifest, input=input, output=output, model=model,
                                 deadline_s=deadline_s, priority=priority,
                                 preprocess=preprocess,
                                 default_input=path.resolve().parent.as_uri() + "/")
            body["items"] = list(dict.fromkeys(request.keys()))  # duplicates collapsed here
            settled = request.settled()  # after reading: a JSON header may follow its items
        body.update(input=settled.input, deadline_s=settled.deadline_s,
                    priority=settled.priority, preprocess=settled.preprocess)
    elif path.is_dir():
        raise ManifestError(f"{source}: a folder cannot be submitted through the API; copy it "
                            "to the input location and submit a manifest")
    else:
        raise ManifestError(f"{source}: expected a manifest file, or a manifest location "
                            f"(s3://... or file://... ending in {', '.join(FORMATS)}, or .gz)")
    return client.submit({k: v for k, v in body.items() if v is not None})


def wait(client: ApiClient, job_id: str, *, console: Console | None = None) -> Job:
    """Poll the job until it is finished, with a progress bar on stderr; on Ctrl-C,
    WaitInterrupted (cancel: Ctrl-C came twice)."""
    console = console or Console(stderr=True)
    job = client.job(job_id)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("[red]{task.fields[failed]} failed"),
               TextColumn("{task.fields[skipped]} skipped"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
            task = bar.add_task(job.id, total=job.counts.total, failed=0, skipped=0)
            while True:
                bar.update(task, completed=job.counts.finished,
                           failed=job.counts.failed, skipped=job.counts.skipped)
                if job.state.finished:
                    return job
                time.sleep(_POLL_S)
                job = client.job(job_id)
    except KeyboardInterrupt:
        raise WaitInterrupted(job_id, cancel=second_interrupt(console, None)) from None
