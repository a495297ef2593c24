"""Turning a manifest or a folder into a job: validate, record, enqueue."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from gpufleet.config import Settings
from gpufleet.domain import Job, Task
from gpufleet.errors import ConfigError, GpufleetError, ManifestError
from gpufleet.index import Index
from gpufleet.manifest import key_problem, read_manifest
from gpufleet.models import parse_spec
from gpufleet.models.base import MODELS
from gpufleet.queue import open_queue
from gpufleet.store import open_location


def new_job_id() -> str:
    # Sorts by creation time; the random tail keeps ids unique across machines.
    return time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


def submit(settings: Settings, index: Index, source: Path, *, input: str | None = None,
           output: str | None = None, model: str | None = None) -> Job:
    """Create a job from a manifest file or a local folder of images and enqueue its tasks."""
    model = model or settings.model
    _check_model(model)
    job_id = new_job_id()
    if source.is_dir():
        keys = _folder_keys(source)
        input = _upload(settings, job_id, source, keys)
    elif source.is_file():
        manifest = read_manifest(source)
        keys = list(manifest.keys)
        input = input or manifest.input or source.resolve().parent.as_uri() + "/"
    else:
        raise ManifestError(f"{source}: no such manifest file or folder")
    return enqueue_job(settings, index, job_id, keys, input=input,
                       output=output or settings.output, model=model)


def enqueue_job(settings: Settings, index: Index, job_id: str, keys: Sequence[str], *,
                input: str, output: str, model: str) -> Job:
    input_location, output_location = open_location(input), open_location(output)
    job = index.create_job(job_id, model=model, input=input_location.uri,
                           output=output_location.uri, keys=keys)
    queue = open_queue(settings.queue, name=model)
    try:
        size = settings.chunk_size
        queue.enqueue([
            Task(job_id, tuple(keys[i:i + size]), input_location.uri,
                 output_location.uri).encode()
            for i in range(0, len(keys), size)])
    except GpufleetError:
        index.delete_job(job_id)  # no job without its tasks
        raise
    finally:
        queue.close()
    return job


def _check_model(spec: str) -> None:
    name, _ = parse_spec(spec)
    if name not in MODELS and ":" not in name:
        raise ConfigError(f"unknown model {name!r}; built-in: {', '.join(MODELS)}, "
                          "or a plugin as package.module:attr")


def _folder_keys(folder: Path) -> list[str]:
    keys, problems = [], []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        key = relative.as_posix()
        problem = key_problem(key)
        if problem:
            problems.append(f"{key!r}: {problem}")
        keys.append(key)
    if problems:
        raise ManifestError(f"{folder}: refused, nothing enqueued: " + "; ".join(problems[:5]))
    if not keys:
        raise ManifestError(f"{folder}: no files to process")
    return keys


def _upload(settings: Settings, job_id: str, folder: Path, keys: list[str]) -> str:
    """Copy a folder into the input bucket, so the job never depends on the folder again."""
    target = open_location(settings.input).child(job_id)
    for key in keys:
        target.put(key, (folder / key).read_bytes())
    return target.uri
