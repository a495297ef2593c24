"""/v1/workers: the workers of the tenant's models, live and lately ended."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from gpufleet.api.auth import ReadView
from gpufleet.api.schemas import Workers
from gpufleet.index.repo import WorkerInfo

router = APIRouter(prefix="/v1/workers", tags=["fleet"])
LIVE_S = 30.0  # a worker heartbeats every few seconds: silent this long, it is gone
_ENDED = ("stopped", "interrupted")


@router.get("", response_model=Workers, summary="The workers serving the tenant's models")
def list_workers(tenant: ReadView,
                 seen_within_s: float = Query(900, ge=1, le=86400, allow_inf_nan=False,
                                              description="Workers heard from this "
                                              "recently, ended ones too.")
                 ) -> dict[str, Any]:
    now = tenant.now()
    return {"workers": [worker_view(w, now=now)
                        for w in tenant.workers(seen_within_s=seen_within_s)]}


def worker_view(w: WorkerInfo, *, now: float) -> dict[str, Any]:
    ready_at = w.started_at + (w.bootstrap_s or 0.0)
    working_s = w.last_seen - ready_at
    rate = w.items / working_s if w.items and working_s > 0 else None
    return {
        "id": w.id, "model": w.model, "state": w.state,
        "live": w.state not in _ENDED and now - w.last_seen <= LIVE_S,
        "capacity": w.capacity, "instance": w.instance, "gpus": w.gpus,
        "gpu_util_pct": w.gpu_util_pct, "gpu_memory_mb": w.gpu_memory_mb,
        "items": w.items, "items_per_s": None if rate is None else round(rate, 3),
        "bootstrap_s": w.bootstrap_s, "started_at": w.started_at, "last_seen": w.last_seen,
        "uptime_s": round(max(0.0, (now if w.state not in _ENDED else w.last_seen)
                              - w.started_at), 1),
    }
