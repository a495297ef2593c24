"""Results: one item (read through the cache), a job's items by page, filtered."""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, Query, Response

from gpufleet.api.auth import ReadView
from gpufleet.api.context import Services, Svc
from gpufleet.api.queries import decode_cursor, encode_cursor
from gpufleet.api.schemas import ItemPage, ItemStatusName, ItemView
from gpufleet.api.tenant import TenantView
from gpufleet.domain import ItemStatus

router = APIRouter(tags=["items"])


def item_bytes(svc: Services, tenant: TenantView, job_id: str, key: str) -> bytes:
    """One result as JSON, read through the cache. Pending items are not cached."""
    row = tenant.item(job_id, key)
    if row is None:
        raise HTTPException(404, f"no item {key!r} in job {job_id!r}")
    body = json.dumps(row.to_json()).encode()
    if row.status is not ItemStatus.PENDING:
        svc.cache.set(tenant.tenant, "item", f"{job_id}/{key}", body,
                      ttl_s=svc.settings.server.cache_ttl_s)
    return body


@router.get("/v1/jobs/{job_id}/items", response_model=ItemPage,
            summary="A job's items in key order, by page, filtered by status, tag and score")
def list_items(job_id: str, tenant: ReadView, svc: Svc,
               status: ItemStatusName | None = None,
               tag: str | None = Query(None, min_length=1, max_length=256,
                                       description="A label (any case) or a tag id."),
               min_score: float | None = Query(None, allow_inf_nan=False),
               cursor: str | None = Query(None, max_length=8192),
               limit: int = Query(100, ge=1, description="Capped at GPUFLEET_API_MAX_PAGE.")
               ) -> Response:
    limit = min(limit, svc.settings.server.max_page)
    rows = tenant.items(job_id, status=status, tag=tag, min_score=min_score,
                           after=decode_cursor(cursor), limit=limit + 1)
    next_cursor = encode_cursor(rows[limit - 1].key) if len(rows) > limit else None
    page = [row.to_json() for row in rows[:limit]]
    return Response(json.dumps({"items": page, "next": next_cursor}).encode(),
                    media_type="application/json")


@router.get("/v1/items/{job_id}/{key:path}", response_model=ItemView,
            summary="One item's result")
async def get_item(job_id: str, key: str, tenant: ReadView, svc: Svc) -> Response:
    body = await svc.cache.aget(tenant.tenant, "item", f"{job_id}/{key}")
    if body is None:
        body = await svc.read(item_bytes, svc, tenant, job_id, key)
    return Response(body, media_type="application/json")
