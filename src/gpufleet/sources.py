"""Jobs from what a user has at hand: a manifest file, a local folder, an S3 prefix.

``submit_source`` turns each into a JobRequest for ``jobs.create_job``: a folder's
photos are uploaded to the input store first; an S3 prefix is read where it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gpufleet.config import Settings
from gpufleet.domain import Job
from gpufleet.errors import ManifestError
from gpufleet.index import Index
from gpufleet.jobs import JobRequest, create_job, new_job_id
from gpufleet.keys import key_problem
from gpufleet.manifest import open_manifest
from gpufleet.models.base import canonical_spec
from gpufleet.store import Location, open_location


def submit_source(settings: Settings, index: Index, source: str | Path, *,
                  input: str | None = None, output: str | None = None, model: str | None = None,
                  deadline_s: float | None = None, priority: int | None = None) -> Job:
    """Create a job from a manifest file, a local folder of images or an s3:// prefix.

    deadline_s and priority, when given, win over the manifest's own.
    """
    spec = canonical_spec(model or settings.model)  # first: the cheapest refusal

    def request(**source_fields: Any) -> JobRequest:
        return JobRequest(output=output, model=spec, deadline_s=deadline_s, priority=priority,
                          **source_fields)

    if isinstance(source, str) and urlsplit(source).scheme == "s3":
        # Every object under the prefix, as a folder locally, but read where it is.
        location = open_location(source, settings=settings)
        return create_job(settings, index, request(items=_listed_keys(location),
                                                   input=location.uri))
    text = str(source)
    path = Path(urlsplit(text).path if text.startswith("file://") else text)
    if path.is_dir():
        job_id = new_job_id()
        keys = _folder_keys(path)
        uploaded = _upload(settings, job_id, path, keys)
        return create_job(settings, index, request(items=keys, input=uploaded, job_id=job_id))
    if path.is_file():  # read as a stream: memory does not grow with the manifest
        with open_manifest(path) as manifest:
            return create_job(settings, index, request(
                manifest=manifest, input=input,
                default_input=path.resolve().parent.as_uri() + "/"))
    raise ManifestError(f"{source}: no such manifest file, folder or s3:// location")


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
