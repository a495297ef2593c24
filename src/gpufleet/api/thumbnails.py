"""Thumbnails of items' input images, for the dashboard: a redirect to a signed URL, as for
a result object, served by the API on every store (it is made here, not stored).

The input is decoded as a worker decodes it (``imaging.photos``: magic bytes, the pixel
limit checked before decoding, JPEG draft mode), so a hostile object costs no more
here than in a worker. An input that is missing, too large or not a photo has no
thumbnail: 204, not an error, since most inputs of a non-image model are not pictures.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse

from gpufleet.api.auth import ReadView
from gpufleet.api.context import Svc
from gpufleet.api.downloads import check_signed
from gpufleet.errors import ItemError
from gpufleet.imaging.photos import decode_photo

router = APIRouter(tags=["items"])
SIZE = 128  # pixels, the longer side
_REDIRECT: dict[int | str, dict[str, Any]] = {
    307: {"description": "Redirect to a short-lived signed thumbnail URL",
          "headers": {"Location": {"schema": {"type": "string"}}}}}
_IMAGE: dict[int | str, dict[str, Any]] = {
    200: {"description": "A JPEG thumbnail of the input",
          "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
    204: {"description": "The input is not a photo (or is missing): no thumbnail"}}


@router.get("/v1/items/{job_id}/{key:path}/thumbnail", status_code=307,
            response_class=RedirectResponse, responses=_REDIRECT,
            summary="Redirect to a signed URL for a thumbnail of the item's input")
def thumbnail(job_id: str, key: str, tenant: ReadView, svc: Svc) -> RedirectResponse:
    tenant.owner(job_id)
    if tenant.item(job_id, key) is None:
        raise HTTPException(404, f"no item {key!r} in job {job_id!r}")
    base = svc.settings.server.public_url.rstrip("/")
    signed = svc.signer.sign(tenant.tenant, tenant.key_id, job_id, key, purpose="thumbnail")
    return RedirectResponse(f"{base}/v1/thumbnails/{quote(job_id, safe='')}/"
                            f"{quote(key, safe='/')}?{urlencode(signed)}", status_code=307)


@router.get("/v1/thumbnails/{job_id}/{key:path}", response_class=Response, responses=_IMAGE,
            summary="A thumbnail of an item's input, through a signed URL (no key needed)")
def signed_thumbnail(job_id: str, key: str, request: Request, svc: Svc,
                     tenant: str = Query(max_length=64), kid: str = Query(max_length=32),
                     expires: str = Query(max_length=20),
                     signature: str = Query(max_length=64)) -> Response:
    check_signed(svc, request, tenant=tenant, kid=kid, job_id=job_id, key=key,
                 expires=expires, signature=signature, purpose="thumbnail")
    view = svc.view(tenant)
    if view.item(job_id, key) is None:
        return Response(status_code=204)
    limits = svc.settings.worker
    try:
        data = svc.location(view.job(job_id).input).get(key, max_bytes=limits.max_object_bytes)
        image = decode_photo(data, max_pixels=limits.max_pixels, draft_size=(SIZE, SIZE))
    except ItemError:
        return Response(status_code=204)
    image.thumbnail((SIZE, SIZE))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return Response(out.getvalue(), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=300"})
