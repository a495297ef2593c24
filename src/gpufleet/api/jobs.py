"""/v1/jobs: submit, list, view (state, counts, rate, ETA, cost so far) and cancel."""

from __future__ import annotations

import json

from fastapi import APIRouter, Query, Response

from gpufleet.api.auth import Reader, Submitter
from gpufleet.api.context import Services, Svc
from gpufleet.api.queries import decode_cursor, encode_cursor
from gpufleet.api.schemas import JobPage, JobRequest, JobView
from gpufleet.api.submit import submit
from gpufleet.api.views import job_view

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
_RUNNING_TTL_S = 1.0  # a running job's view is cached this long: its counts move


def _json(doc: object) -> Response:
    return Response(json.dumps(doc).encode(), media_type="application/json")


def view_bytes(svc: Services, tenant: str, job_id: str) -> bytes:
    """A job's view as JSON, read through the cache; JobNotFound for another tenant's job."""
    cached = svc.cache.get(tenant, "job", job_id)
    if cached is not None:
        return cached
    svc.reads.owner(tenant, job_id)
    job = svc.index.job(job_id)
    body = json.dumps(job_view(job, svc.reads.timing(job_id))).encode()
    ttl_s = svc.settings.api_cache_ttl_s if job.state.finished else min(
        _RUNNING_TTL_S, svc.settings.api_cache_ttl_s)
    svc.cache.set(tenant, "job", job_id, body, ttl_s=ttl_s)
    return body


@router.post("", status_code=201, response_model=JobView,
             summary="Submit a job: its items, or a manifest object")
def create_job(body: JobRequest, who: Submitter, svc: Svc) -> Response:
    job = submit(svc, who.tenant, body)
    return Response(view_bytes(svc, who.tenant, job.id), status_code=201,
                    media_type="application/json")


@router.get("", response_model=JobPage, summary="The tenant's jobs, newest first")
def list_jobs(who: Reader, svc: Svc,
              cursor: str | None = Query(None, max_length=512),
              limit: int = Query(50, ge=1, description="Capped at GPUFLEET_API_MAX_PAGE.")
              ) -> Response:
    limit = min(limit, svc.settings.api_max_page)
    ids = svc.reads.job_ids(who.tenant, before=decode_cursor(cursor), limit=limit + 1)
    views = [json.loads(view_bytes(svc, who.tenant, job_id)) for job_id in ids[:limit]]
    return _json({"jobs": views, "next": encode_cursor(ids[limit - 1]) if len(ids) > limit
                  else None})


@router.get("/{job_id}", response_model=JobView,
            summary="A job: state, counts, rate, ETA, cost so far")
async def get_job(job_id: str, who: Reader, svc: Svc) -> Response:
    cached = await svc.cache.aget(who.tenant, "job", job_id)
    body = cached if cached is not None else await svc.read(view_bytes, svc, who.tenant,
                                                            job_id)
    return Response(body, media_type="application/json")


@router.delete("/{job_id}", response_model=JobView,
               summary="Cancel: pending items end cancelled, queued tasks are dropped")
def cancel_job(job_id: str, who: Submitter, svc: Svc) -> Response:
    svc.reads.owner(who.tenant, job_id)
    svc.index.cancel_job(job_id)  # JobFinished (409) for a job that has ended
    svc.cache.delete(who.tenant, "job", job_id)
    return Response(view_bytes(svc, who.tenant, job_id), media_type="application/json")
