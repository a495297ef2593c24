"""Jobs from what a user has at hand: a manifest file or object, a local folder, an S3 prefix.

``submit_source`` turns each into a JobRequest for ``jobs.create_job``: a folder's
photos are uploaded to the input store first; an S3 prefix is read where it is.
A folder or prefix may be narrowed to names matching ``include`` patterns, so
``notes.txt`` among the photos is left out rather than failed.
"""

from __future__ import annotations

import fnmatch
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gpufleet.config import Settings
from gpufleet.domain import Job
from gpufleet.errors import ManifestError
from gpufleet.index import Index
from gpufleet.inventory import MAX_FILE_BYTES, ReadFile
from gpufleet.jobs import JobRequest, create_job, new_job_id
from gpufleet.keys import key_problem
from gpufleet.manifest import ManifestStream, manifest_format, names_a_manifest, open_manifest
from gpufleet.models.base import canonical_spec
from gpufleet.shards import is_shard
from gpufleet.store import Location, open_location


def submit_source(settings: Settings, index: Index, source: str | Path, *,
                  input: str | None = None, output: str | None = None, model: str | None = None,
                  deadline_s: float | None = None, priority: int | None = None,
                  include: Sequence[str] = (), preprocess: str | None = None,
                  results: str = "objects") -> Job:
    """Create a job from a manifest file or object, a local folder of images, an s3://
    prefix, or one tar shard (a local file or an object).

    deadline_s, priority and preprocess, when given, win over the manifest's own; include: shell
    patterns (``*.jpg``) a folder's or prefix's names must match, any case.
    """
    spec = canonical_spec(model or settings.model)  # first: the cheapest refusal

    def request(**source_fields: Any) -> JobRequest:
        return JobRequest(output=output, model=spec, deadline_s=deadline_s, priority=priority,
                          preprocess=preprocess, results=results, **source_fields)

    if isinstance(source, str) and urlsplit(source).scheme == "s3":
        if is_shard(urlsplit(source).path):  # one tar shard: its members are the job
            _no_include(include)
            folder, _, name = source.rpartition("/")
            return create_job(settings, index, request(items=[name], input=folder + "/"))
        if names_a_manifest(urlsplit(source).path):
            _no_include(include)
            with _object_manifest(settings, source) as manifest:
                return create_job(settings, index, request(
                    manifest=manifest, input=input, default_input=source.rsplit("/", 1)[0] + "/"))
        # Every object under the prefix, as a folder locally, but read where it is.
        location = open_location(source, settings=settings)
        return create_job(settings, index, request(
            items=_included(_listed_keys(location), include, location.uri), input=location.uri))
    text = str(source)
    path = Path(urlsplit(text).path if text.startswith("file://") else text)
    if path.is_dir():
        job_id = new_job_id()
        keys = _included(_folder_keys(path), include, str(path))
        uploaded = _upload(settings, job_id, path, keys)
        return create_job(settings, index, request(items=keys, input=uploaded, job_id=job_id))
    if path.is_file() and is_shard(path.name):  # one tar shard, uploaded like a folder's
        _no_include(include)
        job_id = new_job_id()
        uploaded = _upload(settings, job_id, path.parent, [path.name])
        return create_job(settings, index, request(items=[path.name], input=uploaded,
                                                   job_id=job_id))
    if path.is_file():  # read as a stream: memory does not grow with the manifest
        _no_include(include)
        with open_manifest(path, read_file=files_beside(path.parent)) as manifest:
            return create_job(settings, index, request(
                manifest=manifest, input=input,
                default_input=path.resolve().parent.as_uri() + "/"))
    raise ManifestError(f"{source}: no such manifest file, folder or s3:// location")


def _no_include(patterns: Sequence[str]) -> None:
    if patterns:
        raise ManifestError("--include narrows a folder or an s3:// prefix; a manifest or a "
                            "tar shard lists exactly what to process")


def _included(keys: list[str], patterns: Sequence[str], where: str) -> list[str]:
    if not patterns:
        return keys
    lowered = [p.lower() for p in patterns]
    kept = [k for k in keys if any(fnmatch.fnmatchcase(k.lower(), p) for p in lowered)]
    if not kept:
        raise ManifestError(f"{where}: none of {len(keys):,} name(s) matches --include "
                            + " ".join(patterns))
    return kept


def _object_manifest(settings: Settings, uri: str) -> ManifestStream:
    """A manifest object in a store, read whole (manifests in stores are small enough)."""
    folder, _, name = uri.rpartition("/")
    data = open_location(folder + "/", settings=settings).get(name)
    return ManifestStream(io.BytesIO(data), fmt=manifest_format(name), name=name,
                          read_file=files_in_buckets(settings))


def files_in_buckets(settings: Settings) -> ReadFile:
    """An S3 Inventory's data files, read from its destination bucket."""
    def read(bucket: str, key: str) -> bytes:
        return open_location(f"s3://{bucket}/", settings=settings).get(
            key, max_bytes=MAX_FILE_BYTES)
    return read


def files_beside(folder: Path) -> ReadFile:
    """An S3 Inventory's data files, copied to disk with their bucket layout: a data file's
    key is looked up from the manifest's folder and each folder above it."""
    def read(bucket: str, key: str) -> bytes:
        for above in (folder.resolve(), *folder.resolve().parents):
            candidate = above / key
            if candidate.is_file():
                if candidate.stat().st_size > MAX_FILE_BYTES:
                    raise ManifestError(f"{key}: over {MAX_FILE_BYTES:,} bytes")
                return candidate.read_bytes()
        raise ManifestError(f"inventory data file {key} not found in {folder} or any "
                            "folder above it")
    return read


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
