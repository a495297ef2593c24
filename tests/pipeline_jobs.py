"""A job of small files and a real, in-process pipeline watched by a given observer:
what the observer, metrics and tracing tests all run."""

from __future__ import annotations

from gpufleet.jobs import JobRequest, create_job
from gpufleet.models import load_tagger
from gpufleet.queue import open_queue
from gpufleet.worker.observer import Observer
from gpufleet.worker.pipeline import Pipeline
from tests.conftest import Home, write_files

MODEL = "synthetic?batch_size=4&item_ms=0"


def submit_files(home: Home, *, items: int, missing: int = 0) -> tuple[str, list[str]]:
    """A job of items small files and missing keys that do not exist (they fail)."""
    keys = write_files(home.path / "in", items) + [f"missing-{i}.bin" for i in range(missing)]
    job = create_job(home.settings, home.index(), JobRequest(
        items=keys, input=(home.path / "in").as_uri() + "/", model=MODEL))
    return job.id, keys


def observed_pipeline(home: Home, observer: Observer) -> Pipeline:
    settings = home.settings
    return Pipeline(tagger=load_tagger(MODEL, settings),
                    queue=open_queue(settings.queue, name=MODEL), index=home.index(),
                    settings=settings, worker_id="w-test", observer=observer)
