"""Downloads: a redirect to a short-lived URL for an item's result object.

On S3 the URL is presigned by the store. On the local store it is an
HMAC-signed URL (``signing.py``) that this API serves itself, at
``/v1/signed/{job}/{key}``; the signature is the credential, and it ends when
the key that asked for it is revoked. A key sent along with it must belong to
the URL's tenant. The redirect starts with ``GPUFLEET_API_PUBLIC_URL``, or is
a relative one: never built from the request's ``Host``, which the client
chooses (a cache in front would keep a link to any host).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse

from gpufleet.api.auth import ReadView
from gpufleet.api.context import Services, Svc
from gpufleet.api.queries import Owner
from gpufleet.api.signing import SignatureError
from gpufleet.domain import ItemStatus
from gpufleet.errors import JobNotFound, ObjectMissing
from gpufleet.store.base import Presigning

router = APIRouter(tags=["items"])
_REDIRECT: dict[int | str, dict[str, Any]] = {
    307: {"description": "Redirect to a short-lived download URL",
          "headers": {"Location": {"schema": {"type": "string"}}}}}
_OBJECT: dict[int | str, dict[str, Any]] = {200: {"description": "The result object (JSON)",
                 "content": {"application/json": {"schema": {"type": "object"}}}}}


@router.get("/v1/items/{job_id}/{key:path}/download", status_code=307,
            response_class=RedirectResponse, responses=_REDIRECT,
            summary="Redirect to a signed URL for the item's result object")
def download(job_id: str, key: str, tenant: ReadView,
             svc: Svc) -> RedirectResponse:
    owner = tenant.owner(job_id)
    row = tenant.item(job_id, key)
    if row is None or row.status is ItemStatus.PENDING:
        raise HTTPException(404, f"no result for item {key!r} in job {job_id!r}")
    no_object_per_item(owner, job_id)
    location = svc.location(owner.output).child(job_id)
    if isinstance(location.store, Presigning):
        url = location.store.presign(location.key(f"{key}.json"),
                                     expires_s=int(svc.signer.ttl_s))
    else:
        base = svc.settings.server.public_url.rstrip("/")
        url = (f"{base}/v1/signed/{quote(job_id, safe='')}/{quote(key, safe='/')}?"
               + urlencode(svc.signer.sign(tenant.tenant, tenant.key_id, job_id, key)))
    return RedirectResponse(url, status_code=307)


def no_object_per_item(owner: Owner, job_id: str) -> None:
    """A job whose results are JSONL shards has no object per item to download: 409, saying
    where its results are (the item's own result is GET /v1/items/{job}/{key})."""
    if owner.results == "shards":
        raise HTTPException(409, f"job {job_id} writes its results as JSONL shards, one per "
                            f"task (under {job_id}/shards/ in its output), not one object per "
                            f"item: read the item at /v1/items/{job_id}/..., or every item "
                            f"with GET /v1/jobs/{job_id}/export")


def check_signed(svc: Services, request: Request, *, tenant: str, kid: str, job_id: str,
                 key: str, expires: str, signature: str, purpose: str) -> Owner:
    """The job's owner if a signed URL is valid for purpose: signed by us, not expired, its
    key not revoked, and any key sent along with it of the URL's tenant; else an error."""
    try:
        svc.signer.verify(tenant=tenant, key_id=kid, job=job_id, key=key, expires=expires,
                          signature=signature, purpose=purpose)
    except SignatureError as exc:
        raise HTTPException(403, f"{exc}: ask /v1/items/.../{purpose} for a new URL"
                            ) from None
    if not svc.keys.active(kid):
        raise HTTPException(403, "the API key that asked for this URL was revoked")
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        who = svc.keys.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if who is None:
            raise HTTPException(401, "invalid or revoked API key",
                                headers={"WWW-Authenticate": "Bearer"})
        if who.tenant != tenant:
            raise JobNotFound(f"no job {job_id!r}")
    return svc.view(tenant).owner(job_id)


@router.get("/v1/signed/{job_id}/{key:path}", response_class=Response, responses=_OBJECT,
            summary="A result object, through a signed URL (no key needed)")
def signed_download(job_id: str, key: str, request: Request, svc: Svc,
                    tenant: str = Query(max_length=64), kid: str = Query(max_length=32),
                    expires: str = Query(max_length=20),
                    signature: str = Query(max_length=64)) -> Response:
    owner = check_signed(svc, request, tenant=tenant, kid=kid, job_id=job_id, key=key,
                         expires=expires, signature=signature, purpose="download")
    no_object_per_item(owner, job_id)
    try:
        data = svc.location(owner.output).child(job_id).get(f"{key}.json")
    except ObjectMissing:
        raise HTTPException(404, f"no result object for item {key!r} in job {job_id!r}"
                            ) from None
    return Response(data, media_type="application/json",
                    headers={"Cache-Control": "private, no-store"})
