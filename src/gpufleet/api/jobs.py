"""/v1/jobs: submit, list, view (state, counts, rate, ETA, cost so far) and cancel."""

from __future__ import annotations

import json

from fastapi import APIRouter, Query, Response

from gpufleet.api.auth import ReadView, SubmitView
from gpufleet.api.bodies import SafeJsonRoute
from gpufleet.api.context import Services, Svc
from gpufleet.api.queries import decode_cursor, encode_cursor
from gpufleet.api.schemas import JobPage, JobSubmission, JobView
from gpufleet.api.submit import create_from_body
from gpufleet.api.tenant import TenantView
from gpufleet.api.views import job_view

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=SafeJsonRoute)
_RUNNING_TTL_S = 1.0  # a running job's view is cached this long: its counts move


def _json(doc: object) -> Response:
    return Response(json.dumps(doc).encode(), media_type="application/json")


def view_bytes(svc: Services, tenant: TenantView, job_id: str) -> bytes:
    """A job's view as JSON, read through the cache; JobNotFound for another tenant's job."""
    cached = svc.cache.get(tenant.tenant, "job", job_id)
    if cached is not None:
        return cached
    job = tenant.job(job_id)
    view = job_view(job, tenant.timing(job_id), now=tenant.now())
    # The tenant's own locations, relative to its roots: nothing of the deployment's paths.
    for use in ("input", "output"):
        view[use] = svc.locations.shown(tenant.tenant, view[use], use=use)
    body = json.dumps(view).encode()
    ttl_s = svc.settings.server.cache_ttl_s if job.state.finished else min(
        _RUNNING_TTL_S, svc.settings.server.cache_ttl_s)
    svc.cache.set(tenant.tenant, "job", job_id, body, ttl_s=ttl_s)
    return body


@router.post("", status_code=201, response_model=JobView,
             summary="Submit a job: its items, or a manifest object")
def post_job(body: JobSubmission, tenant: SubmitView, svc: Svc) -> Response:
    job = create_from_body(svc, tenant.tenant, body)
    return Response(view_bytes(svc, tenant, job.id), status_code=201,
                    media_type="application/json")


@router.get("", response_model=JobPage, summary="The tenant's jobs, newest first")
def list_jobs(tenant: ReadView, svc: Svc,
              cursor: str | None = Query(None, max_length=512),
              limit: int = Query(50, ge=1, description="Capped at GPUFLEET_API_MAX_PAGE.")
              ) -> Response:
    limit = min(limit, svc.settings.server.max_page)
    ids = tenant.job_ids(before=decode_cursor(cursor), limit=limit + 1)
    views = [json.loads(view_bytes(svc, tenant, job_id)) for job_id in ids[:limit]]
    return _json({"jobs": views, "next": encode_cursor(ids[limit - 1]) if len(ids) > limit
                  else None})


@router.get("/{job_id}", response_model=JobView,
            summary="A job: state, counts, rate, ETA, cost so far")
async def get_job(job_id: str, tenant: ReadView, svc: Svc) -> Response:
    cached = await svc.cache.aget(tenant.tenant, "job", job_id)
    body = cached if cached is not None else await svc.read_off_loop(view_bytes, svc, tenant,
                                                                      job_id)
    return Response(body, media_type="application/json")


@router.delete("/{job_id}", response_model=JobView,
               summary="Cancel: pending items end cancelled, queued tasks are dropped")
def cancel_job(job_id: str, tenant: SubmitView, svc: Svc) -> Response:
    tenant.cancel(job_id)  # 404 for another tenant's job; JobFinished (409) for an ended one
    svc.cache.delete(tenant.tenant, "job", job_id)
    return Response(view_bytes(svc, tenant, job_id), media_type="application/json")
