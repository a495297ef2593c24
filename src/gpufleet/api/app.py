"""The application factory: one FastAPI app from Settings, with nothing global.

Middleware, outermost first: metrics (every answer is counted), the client
address filter (CIDR allow/deny, trusted proxies), a valid key before any
body is read, the body size limit. Keys,
scopes and the rate limit are checked per route (``auth.require``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from gpufleet import __version__
from gpufleet.api import (
    dlq,
    downloads,
    export,
    fleet,
    health,
    items,
    jobs,
    notify,
    search,
    thumbnails,
    whoami,
    workers,
)
from gpufleet.api.auth import KeyBeforeBody
from gpufleet.api.context import Services
from gpufleet.api.counts import ItemCounts
from gpufleet.api.keys import KeyStore
from gpufleet.api.limits import BodySizeLimit, RateLimiter
from gpufleet.api.locations import TenantLocations
from gpufleet.api.metrics import Metrics, MetricsMiddleware
from gpufleet.api.models import ModelPolicy
from gpufleet.api.network import ClientFilter, parse_networks
from gpufleet.api.params import known_query
from gpufleet.api.preprocess import PreprocessPolicy
from gpufleet.api.queries import InvalidCursor, Reads
from gpufleet.api.queues import QueueHandles
from gpufleet.api.quotas import Limits, OverQuota, QuotaExceeded, Quotas
from gpufleet.api.readthrough import ReadThrough
from gpufleet.api.schemas import Error
from gpufleet.api.signing import Signer, signing_secret
from gpufleet.cache import Cache, open_cache
from gpufleet.config import Settings
from gpufleet.errors import (
    ConfigError,
    GpufleetError,
    JobFinished,
    JobNotFound,
    ManifestError,
    TaskTooLarge,
    Unavailable,
)
from gpufleet.index import Index
from gpufleet.queue import open_queue

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)
KEY_CACHE_S = 1.0  # a revoked key is refused within this long
# What each expected error becomes; anything else from gpufleet is a 400.
_STATUS: tuple[tuple[type[GpufleetError], int], ...] = (
    (JobNotFound, 404), (JobFinished, 409), (InvalidCursor, 400), (ManifestError, 422),
    (ConfigError, 422), (TaskTooLarge, 422), (QuotaExceeded, 429), (OverQuota, 422),
    (Unavailable, 503))
_UNAVAILABLE = {name: f"the {what} is unavailable; try again shortly" for name, what in (
    ("QueueUnavailable", "queue"), ("IndexUnavailable", "index"), ("StoreUnavailable", "store"))}
# A dependency may be back soon; a tenant's open jobs take longer to end.
_RETRY_AFTER_S = {503: "5", 429: "60"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error, "description": text} for code, text in (
        (400, "Bad request (e.g. an invalid cursor)"),
        (401, "Missing, malformed, unknown or revoked API key, or a key in the URL"),
        (403, "The key lacks the scope, or the client address is not allowed"),
        (404, "No such object for this tenant"),
        (409, "The job is finished: nothing to cancel"),
        (413, "Request body too large"),
        (422, "Invalid request"),
        (429, "Rate limit or a tenant's quota of open work exceeded: see Retry-After"),
        (503, "The index, queue or store is unavailable"))}
_ERRORS[429]["headers"] = {"Retry-After": {"schema": {"type": "string"},
                                           "description": "Seconds to wait"}}


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time,
               cache: Cache | None = None) -> FastAPI:
    """clock: wall time for signed URL expiry and the rate limiter (tests control it)."""
    # Every setting is checked before anything is opened (the rest by ServerSettings).
    networks = {name: parse_networks(getattr(settings.server, name),
                                     setting=f"GPUFLEET_API_{name.upper()}")
                for name in ("allow", "deny", "trusted_proxies")}
    signer = Signer(signing_secret(settings), ttl_s=settings.server.url_ttl_s, clock=clock)
    limiter = RateLimiter(rate_per_s=settings.server.rate_per_s, burst=settings.server.burst,
                          clock=clock)
    locations = TenantLocations(settings)
    models = ModelPolicy(settings.server.models)
    PreprocessPolicy(settings.server.preprocess_steps)  # a bad setting stops the API here
    queues = QueueHandles(lambda model: open_queue(settings.queue, name=model),
                          size=settings.server.open_queues)
    index = Index(settings.db)
    svc = Services(
        settings=settings, index=index, reads=Reads(index),
        keys=KeyStore(index, clock=clock, cache_s=KEY_CACHE_S),
        cache=ReadThrough(cache if cache is not None else open_cache(settings.cache)),
        signer=signer, limiter=limiter, locations=locations, models=models,
        queues=queues, quotas=Quotas(Limits(
            max_models=settings.server.max_models, max_open_jobs=settings.server.max_open_jobs,
            max_open_items=settings.server.max_open_items)),
        clock=clock)
    svc.metrics = Metrics(depths=svc.depths, item_counts=ItemCounts(index).totals)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        svc.close()
        svc.cache.close()

    # FastAPIOffline: /docs (Swagger UI) and /redoc load their scripts from this API, so
    # they work where the API's users cannot reach a CDN.
    app = FastAPIOffline(title="gpufleet", version=__version__, lifespan=lifespan,
                         description="Jobs, results, tag search and signed downloads, per "
                         "tenant. Send an API key as `Authorization: Bearer KEY`.")
    app.state.services = svc
    strict = [Depends(known_query)]
    for module in (jobs, export, items, search, dlq, fleet, workers, whoami, notify):
        # downloads and thumbnails first: their /v1/items/{job}/{key}/download (/thumbnail)
        # must win over items' {key:path}.
        if module is items:
            app.include_router(downloads.router, responses=_ERRORS, dependencies=strict)
            app.include_router(thumbnails.router, responses=_ERRORS, dependencies=strict)
        app.include_router(module.router, responses=_ERRORS, dependencies=strict)
    app.include_router(health.router, responses={403: _ERRORS[403], 422: _ERRORS[422]},
                       dependencies=strict)
    app.mount("/dashboard", StaticFiles(directory=STATIC, html=True), name="dashboard")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    _install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(KeyBeforeBody, svc=svc)
    app.add_middleware(ClientFilter, allow=networks["allow"], deny=networks["deny"],
                       trusted_proxies=networks["trusted_proxies"])
    app.add_middleware(MetricsMiddleware, metrics=svc.metrics)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    async def gpufleet_error(_: Request, exc: Exception) -> JSONResponse:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)
        if status == 503:
            # Its message names the service (a path, host:port): logged, not shown.
            log.warning("503: %s: %s", type(exc).__name__, exc)
            exc = Unavailable(_UNAVAILABLE.get(type(exc).__name__, "a service the API uses "
                                               "is unavailable; try again shortly"))
        retry_after = _RETRY_AFTER_S.get(status)
        headers = {"Retry-After": retry_after} if retry_after else None
        return JSONResponse({"detail": str(exc).splitlines()[0] if str(exc) else "error"},
                            status_code=status, headers=headers)

    async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid request')}"},
                            status_code=422)

    app.add_exception_handler(GpufleetError, gpufleet_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
