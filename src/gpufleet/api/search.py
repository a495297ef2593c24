"""/v1/search: items tagged with a label or id across the tenant's jobs."""

from __future__ import annotations

import json

from fastapi import APIRouter, Query, Response

from gpufleet.api.auth import ReadView
from gpufleet.api.context import Svc
from gpufleet.api.queries import decode_cursor, encode_cursor
from gpufleet.api.schemas import SearchPage

router = APIRouter(tags=["items"])


@router.get("/v1/search", response_model=SearchPage,
            summary="Items of every job of the tenant with this tag, by (job, key)")
def search(tenant: ReadView, svc: Svc,
           tag: str = Query(min_length=1, max_length=256,
                            description="A label (any case) or a tag id, e.g. n02123045."),
           min_score: float | None = Query(None, allow_inf_nan=False),
           cursor: str | None = Query(None, max_length=8192),
           limit: int = Query(100, ge=1, description="Capped at GPUFLEET_API_MAX_PAGE.")
           ) -> Response:
    limit = min(limit, svc.settings.server.max_page)
    after = decode_cursor(cursor, parts=2)
    hits = tenant.search(tag=tag, min_score=min_score,
                            after=None if after is None else (after[0], after[1]),
                            limit=limit + 1)
    next_cursor = (encode_cursor([hits[limit - 1][0].job, hits[limit - 1][0].key])
                   if len(hits) > limit else None)
    page = [{**item.to_json(), "score": score} for item, score in hits[:limit]]
    return Response(json.dumps({"items": page, "next": next_cursor}).encode(),
                    media_type="application/json")
