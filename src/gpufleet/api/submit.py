"""A job submitted over HTTP: its items or its manifest object, checked, then enqueued.

Manifests, inputs and outputs must be the tenant's own locations
(``locations.py``), so a tenant cannot make workers read or write anywhere
else; only model specs the operator admits are accepted, their parameters
within the model's declaration (``models.py``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import PurePosixPath

from gpufleet.api.context import Services
from gpufleet.api.schemas import JobRequest
from gpufleet.domain import Job
from gpufleet.errors import ManifestError, ObjectMissing
from gpufleet.jobs import enqueue_job, new_job_id
from gpufleet.manifest import FORMATS, ManifestStream


def submit(svc: Services, tenant: str, request: JobRequest) -> Job:
    settings = svc.settings
    model = request.model or settings.model
    svc.models.check(model)  # first: the cheapest refusal
    if (request.items is None) == (request.manifest is None):
        raise ManifestError('give either "items" or "manifest"')
    if request.items is not None:
        _check_count(len(request.items), svc)
        data, fmt, name = json.dumps(request.items).encode(), "json", "items"
    else:
        assert request.manifest is not None
        data, fmt, name = _read_manifest(svc, tenant, request.manifest)
    manifest = ManifestStream(io.BytesIO(data), fmt=fmt, name=name)
    input_uri = svc.locations.resolve(tenant, request.input or manifest.input, what="input",
                                      use="input")
    output_uri = svc.locations.resolve(tenant, request.output, what="output", use="output")
    deadline_s = request.deadline_s if request.deadline_s is not None else manifest.deadline_s
    priority = request.priority if request.priority is not None else manifest.priority
    keys = list(_counted(manifest.keys(), svc))  # at most GPUFLEET_API_MAX_ITEMS
    with svc.quotas.claim(svc.view(tenant), model=model, items=len(keys)):
        return enqueue_job(settings, svc.index, new_job_id(), keys, input=input_uri,
                           output=output_uri, model=model, deadline_s=deadline_s,
                           priority=priority or 0, tenant=tenant)


def _check_count(count: int, svc: Services) -> None:
    if count > svc.settings.api_max_items:
        raise ManifestError(f"{count:,} items: over the limit of {svc.settings.api_max_items:,} "
                            "per job (GPUFLEET_API_MAX_ITEMS)")


def _counted(keys: Iterator[str], svc: Services) -> Iterator[str]:
    """The keys, refused (and the job with them) past GPUFLEET_API_MAX_ITEMS entries."""
    for n, key in enumerate(keys, 1):
        if n > svc.settings.api_max_items:
            _check_count(n, svc)
        yield key


def _read_manifest(svc: Services, tenant: str, uri: str) -> tuple[bytes, str, str]:
    folder, _, name = uri.rpartition("/")
    fmt = FORMATS.get(PurePosixPath(name).suffix.lower())
    if fmt is None:
        raise ManifestError(f"manifest {uri!r}: expected a location ending in a file name with "
                            f"one of {', '.join(FORMATS)}")
    location = svc.location(svc.locations.resolve(tenant, folder or None, what="manifest",
                                                  use="input"))
    try:
        return location.get(name), fmt, name
    except ObjectMissing:
        raise ManifestError(f"manifest {uri!r}: no such object") from None
