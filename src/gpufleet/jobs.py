"""Turning a manifest or a folder into a job: validate, record, enqueue."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from gpufleet.config import Settings
from gpufleet.domain import Job
from gpufleet.enqueuing import ENQUEUE_LEASE_S, enqueue_pending, finish_interrupted, new_enqueuer_id
from gpufleet.errors import ConfigError, GpufleetError, ManifestError
from gpufleet.index import Index
from gpufleet.index.enqueue_marks import EnqueueMarks
from gpufleet.keys import key_problem
from gpufleet.manifest import MAX_DEADLINE_S, MAX_PRIORITY, open_manifest
from gpufleet.models.base import check_spec
from gpufleet.store import Location, open_location


def new_job_id() -> str:
    # Sorts by creation time; the random tail keeps ids unique across machines.
    return time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


def submit(settings: Settings, index: Index, source: str | Path, *, input: str | None = None,
           output: str | None = None, model: str | None = None,
           deadline_s: float | None = None, priority: int | None = None) -> Job:
    """Create a job from a manifest file or a local folder of images and enqueue its tasks.

    deadline_s and priority, when given, win over the manifest's own.
    """
    model = model or settings.model
    check_spec(model)
    job_id = new_job_id()
    if isinstance(source, str) and urlsplit(source).scheme == "s3":
        # Every object under the prefix, as a folder locally, but read where it is.
        location = open_location(source, settings=settings)
        return enqueue_job(settings, index, job_id, _listed_keys(location), input=location.uri,
                           output=output or settings.output, model=model,
                           deadline_s=deadline_s, priority=priority or 0)
    text = str(source)
    path = Path(urlsplit(text).path if text.startswith("file://") else text)
    if path.is_dir():
        keys = _folder_keys(path)
        input = _upload(settings, job_id, path, keys)
    elif path.is_file():  # read as a stream: memory does not grow with the manifest
        with open_manifest(path) as manifest:
            return enqueue_job(
                settings, index, job_id, manifest.keys(),
                input=input or manifest.input or path.resolve().parent.as_uri() + "/",
                output=output or settings.output, model=model,
                deadline_s=deadline_s if deadline_s is not None else manifest.deadline_s,
                priority=(priority if priority is not None else manifest.priority) or 0)
    else:
        raise ManifestError(f"{source}: no such manifest file, folder or s3:// location")
    return enqueue_job(settings, index, job_id, keys, input=input,
                       output=output or settings.output, model=model, deadline_s=deadline_s,
                       priority=priority or 0)


def enqueue_job(settings: Settings, index: Index, job_id: str, keys: Iterable[str], *,
                input: str, output: str, model: str, deadline_s: float | None = None,
                priority: int = 0, tenant: str = "default") -> Job:
    """Record the job with its items, then enqueue its tasks.

    The job is marked as being enqueued until every task is on the queue: if this process
    dies midway, the next gpufleet process that looks (a submit, a worker starting, the
    controller, the API) enqueues the rest. If the queue cannot be reached before any task
    is enqueued, the job is removed again and the error raised.
    """
    if deadline_s is not None and not 0 < deadline_s <= MAX_DEADLINE_S:
        raise ConfigError(f"deadline must be more than 0 and at most {MAX_DEADLINE_S:,} s "
                          f"(30 days), not {deadline_s:g}")
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise ConfigError(f"priority must be from {-MAX_PRIORITY} to {MAX_PRIORITY}")
    input_location = open_location(input, settings=settings)
    output_location = open_location(output, settings=settings)
    finish_interrupted(settings, index)  # this process looks: finish what others left
    enqueuer = new_enqueuer_id()
    job = index.create_job(job_id, model=model, input=input_location.uri,
                           output=output_location.uri, keys=keys, deadline_s=deadline_s,
                           priority=priority, tenant=tenant, enqueuer=enqueuer,
                           enqueuer_lease_s=ENQUEUE_LEASE_S)
    marks = EnqueueMarks(index)
    claim = marks.held(job_id, enqueuer)
    try:
        enqueue_pending(settings, index, job, claim)
    except GpufleetError as exc:
        if marks.untouched(claim):
            index.delete_job(job_id)  # nothing is on the queue: no job without its tasks
            raise
        marks.hand_over(claim)
        raise type(exc)(f"{exc}; job {job_id} was created and the rest of its tasks will be "
                        "enqueued by the next gpufleet process (do not submit it again)"
                        ) from exc
    except BaseException:  # interrupted: the next process that looks goes on from the mark
        marks.hand_over(claim)
        raise
    return index.job(job_id)


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


def _listed_keys(location: Location) -> list[str]:
    """Every object under an object-store prefix, skipping folder markers and hidden names."""
    keys, problems = [], []
    for key in location.list():
        if key.endswith("/") or any(part.startswith(".") for part in key.split("/")):
            continue
        problem = key_problem(key)
        if problem:
            problems.append(f"{key!r}: {problem}")
        keys.append(key)
    if problems:
        raise ManifestError(f"{location.uri}: refused, nothing enqueued: "
                            + "; ".join(problems[:5]))
    if not keys:
        raise ManifestError(f"{location.uri}: no objects to process")
    return keys


def _upload(settings: Settings, job_id: str, folder: Path, keys: list[str]) -> str:
    """Copy a folder into the input bucket, so the job never depends on the folder again."""
    target = open_location(settings.input, settings=settings).child(job_id)
    for key in keys:
        target.put(key, (folder / key).read_bytes())
    return target.uri
