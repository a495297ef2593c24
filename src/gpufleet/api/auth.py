"""Who is asking: the Bearer key, its scope, its rate limit. Keys in URLs are refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from gpufleet.api.context import Services, services
from gpufleet.api.keys import Principal
from gpufleet.api.limits import send_json, too_many_requests
from gpufleet.api.tenant import TenantView

_bearer = HTTPBearer(auto_error=False, description="An API key: gpufleet keys create")
KEY_PARAMETERS = {"api_key", "apikey", "api-key", "key", "token", "access_token",
                   "authorization", "auth"}
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Declares the Bearer scheme in the OpenAPI document; the checks below read the header.
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers=_CHALLENGE)


def require(scope: str | None) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the request's principal, holding ``scope`` (any valid key when None),
    within its rate limit."""

    async def principal(request: Request, _credentials: Credentials) -> Principal:
        for name, value in request.query_params.multi_items():
            if name.lower() in KEY_PARAMETERS or value.startswith("gfk_"):
                raise _unauthorized("API keys are refused in URLs: send Authorization: "
                                    "Bearer KEY (and revoke a key that was in a URL)")
        header = request.headers.get("authorization")
        if not header:
            raise _unauthorized("missing API key: send Authorization: Bearer KEY")
        scheme, _sep, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise _unauthorized("malformed Authorization header: expected Bearer KEY")
        svc = services(request)
        found = await svc.read(svc.keys.authenticate, raw.strip())
        if found is None:
            raise _unauthorized("invalid or revoked API key")
        if scope is not None and scope not in found.scopes:
            raise HTTPException(403, f"this API key does not have the {scope!r} scope")
        wait_s = svc.limiter.take(found.key_id)
        if wait_s:
            if svc.metrics is not None:
                svc.metrics.rate_limited.inc()
            raise too_many_requests(wait_s)
        return found

    return principal


Reader = Annotated[Principal, Depends(require("read"))]
Submitter = Annotated[Principal, Depends(require("submit"))]
Admin = Annotated[Principal, Depends(require("admin"))]
AnyKey = Annotated[Principal, Depends(require(None))]


def viewer(scope: str) -> Callable[..., Awaitable[TenantView]]:
    """A dependency: the index as the tenant of the request's key sees it."""
    principal = require(scope)

    # (a default, not Annotated: the annotation could not name this local dependency)
    async def view(request: Request,
                   who: Principal = Depends(principal)) -> TenantView:  # noqa: B008
        return services(request).view(who.tenant, key_id=who.key_id)

    return view


ReadView = Annotated[TenantView, Depends(viewer("read"))]
SubmitView = Annotated[TenantView, Depends(viewer("submit"))]
AdminView = Annotated[TenantView, Depends(viewer("admin"))]


class KeyBeforeBody:
    """Refuse a request that carries a body without a valid key before reading a byte of
    the body: an anonymous client cannot make the API buffer or parse anything (the route
    checks the key's scope and rate afterwards, as for every request)."""

    def __init__(self, app: ASGIApp, *, svc: Services) -> None:
        self.app, self.svc = app, svc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for n, v in scope["headers"]
                       if n == b"authorization"), "")
        scheme, _sep, raw = header.partition(" ")
        found = None
        if scheme.lower() == "bearer" and raw.strip():
            found = (self.svc.keys.authenticate(raw.strip()) if self.svc.inline_reads
                     else await run_in_threadpool(self.svc.keys.authenticate, raw.strip()))
        if found is None:
            await send_json(send, 401, {"detail": "a request with a body needs a valid API "
                                        "key: send Authorization: Bearer KEY"},
                            headers=_CHALLENGE)
            return
        await self.app(scope, receive, send)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False
