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
from dataclasses import replace

from gpufleet.api.context import Services
from gpufleet.api.preprocess import PreprocessPolicy
from gpufleet.api.schemas import JobSubmission
from gpufleet.domain import Job
from gpufleet.errors import ManifestError, ObjectMissing
from gpufleet.inventory import MAX_FILE_BYTES, ReadFile
from gpufleet.jobs import JobRequest, create_job
from gpufleet.manifest import ManifestStream, manifest_format
from gpufleet.shards import expand_shards


def create_from_body(svc: Services, tenant: str, body: JobSubmission) -> Job:
    """The job a request body asks for, in the tenant's own locations, within its quota."""
    model = svc.models.check(body.model or svc.settings.model)  # first: the cheapest refusal
    if (body.items is None) == (body.manifest is None):
        raise ManifestError('give either "items" or "manifest"')
    if body.items is not None:
        _check_count(len(body.items), svc)
        data, fmt, name = json.dumps(body.items).encode(), "json", "items"
    else:
        assert body.manifest is not None
        data, fmt, name = _read_manifest(svc, tenant, body.manifest)
    manifest = ManifestStream(io.BytesIO(data), fmt=fmt, name=name,
                              read_file=_tenant_files(svc, tenant))
    request = JobRequest(manifest=manifest, input=body.input, output=body.output, model=model,
                         deadline_s=body.deadline_s, priority=body.priority, tenant=tenant,
                         preprocess=body.preprocess,
                         results=body.results or "objects").settled()
    # The body's chain or the manifest's: user steps (code on the workers) only if admitted.
    policy = PreprocessPolicy(svc.settings.server.preprocess_steps)
    request = replace(request, preprocess=policy.check(request.preprocess))
    # Whatever the request or its manifest named, only the tenant's own locations.
    input_uri = svc.locations.resolve(tenant, body.input or manifest.input, what="input",
                                      use="input")
    output_uri = svc.locations.resolve(tenant, body.output, what="output", use="output")
    # Tar shards are expanded into their members first: the limit and the quota count those.
    members = expand_shards(svc.location(input_uri), manifest.keys(),
                            max_entries=svc.settings.tasks.max_shard_entries)
    keys = list(_counted(members, svc))  # at most GPUFLEET_API_MAX_ITEMS
    with svc.quotas.claim(svc.view(tenant), model=model, items=len(keys)):
        return create_job(svc.settings, svc.index, replace(
            request, manifest=None, items=keys, input=input_uri, output=output_uri))


def _check_count(count: int, svc: Services) -> None:
    if count > svc.settings.server.max_items:
        raise ManifestError(f"{count:,} items: over the limit of {svc.settings.server.max_items:,} "
                            "per job (GPUFLEET_API_MAX_ITEMS)")


def _counted(keys: Iterator[str], svc: Services) -> Iterator[str]:
    """The keys, refused (and the job with them) past GPUFLEET_API_MAX_ITEMS entries."""
    for n, key in enumerate(keys, 1):
        if n > svc.settings.server.max_items:
            _check_count(n, svc)
        yield key


def _read_manifest(svc: Services, tenant: str, uri: str) -> tuple[bytes, str, str]:
    folder, _, name = uri.rpartition("/")
    fmt = manifest_format(name)
    location = svc.location(svc.locations.resolve(tenant, folder or None, what="manifest",
                                                  use="input"))
    try:
        return location.get(name), fmt, name
    except ObjectMissing:
        raise ManifestError(f"manifest {uri!r}: no such object") from None


def _tenant_files(svc: Services, tenant: str) -> ReadFile:
    """An S3 Inventory's data files, from its destination bucket if that is the tenant's."""
    def read(bucket: str, key: str) -> bytes:
        location = svc.location(svc.locations.resolve(tenant, f"s3://{bucket}/",
                                                      what="inventory", use="input"))
        return location.get(key, max_bytes=MAX_FILE_BYTES)
    return read
