"""Liveness, readiness (queue, index, store) and Prometheus metrics: no key needed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import text

from gpufleet.api.context import Services, Svc
from gpufleet.api.metrics import CONTENT_TYPE
from gpufleet.api.schemas import Health, Readiness
from gpufleet.store.base import HealthChecked

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check_queue(svc: Services) -> None:
    with svc.queue(svc.settings.model) as queue:
        queue.depth()


def _check_index(svc: Services) -> None:
    with svc.index.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _check_store(svc: Services) -> None:
    location = svc.location(svc.settings.output)
    if isinstance(location.store, HealthChecked):
        location.store.check()
    else:
        location.store.exists(location.key(".gpufleet-readyz"))


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "A dependency is down"}},
            summary="The queue, the index and the store answer")
def readyz(response: Response, svc: Svc) -> dict[str, Any]:
    checks: dict[str, str] = {}
    probes: dict[str, Callable[[], object]] = {
        "queue": lambda: _check_queue(svc),
        "index": lambda: _check_index(svc), "store": lambda: _check_store(svc)}
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"
            # The reason names paths and host:port of internal services: the log has it,
            # the (unauthenticated) answer only says which dependency is down.
            log.warning("readyz: %s: %s: %s", name, type(exc).__name__, exc)
            checks[name] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    response.status_code = 200 if ready else 503
    return {"status": "ready" if ready else "unavailable", "checks": checks}


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
                             "description": "Metrics in the Prometheus text format"}})
def metrics(svc: Svc) -> Response:
    assert svc.metrics is not None
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE)
