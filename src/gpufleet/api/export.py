"""GET /v1/jobs/{id}/export: a job's results as one JSONL, CSV or Parquet file, streamed.

The rows are read in keyset-paginated batches and each batch is sent as soon as it
is encoded, so the API holds one batch whatever the job's size. The job must be
the key's tenant's, and running or finished (a queued job has nothing to export:
409). Result object keys are shown relative to the tenant's output root, as in the
job's view. For several files of a bounded size, use ``gpufleet export``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from gpufleet.api.auth import ReadView
from gpufleet.api.context import Svc
from gpufleet.export import FORMATS, NotExportable, stream

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
_FILE: dict[int | str, dict[str, Any]] = {200: {
    "description": "The export file: one row per item (job, key, status, attempts, error, "
                   "finished_at, result, tags)",
    "content": {media: {"schema": {"type": "string", "format": "binary"}}
                for media in FORMATS.values()}}}


@router.get("/{job_id}/export", response_class=StreamingResponse, responses=_FILE,
            summary="A job's results as one JSONL, CSV or Parquet file, streamed")
def export(job_id: str, tenant: ReadView, svc: Svc,
           format: str = Query("jsonl", pattern="^(jsonl|csv|parquet)$")) -> StreamingResponse:
    def shown(uri: str) -> str:
        return svc.locations.shown(tenant.tenant, uri, use="output")

    try:
        batches = tenant.export(job_id, shown=shown)
    except NotExportable as exc:
        raise HTTPException(409, str(exc)) from None
    return StreamingResponse(
        stream(batches, format), media_type=FORMATS[format],
        headers={"Content-Disposition": f'attachment; filename="{job_id}.{format}"',
                 "Cache-Control": "private, no-store"})
