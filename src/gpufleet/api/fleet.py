"""/v1/fleet: the tenant's models (open jobs, pending items) and the workers serving them,
now and over time (the controller's decisions, throughput, backlog, cost)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from gpufleet.api.auth import ReadView
from gpufleet.api.schemas import Fleet, FleetHistory

router = APIRouter(prefix="/v1/fleet", tags=["fleet"])
MAX_WINDOW_S = 7 * 86400  # the index keeps 200 decisions per model: enough for days


@router.get("", response_model=Fleet, summary="The tenant's models and their workers")
def fleet(tenant: ReadView) -> dict[str, Any]:
    return tenant.fleet()


@router.get("/history", response_model=FleetHistory,
            summary="Decisions on the tenant's models and its work over time")
def history(tenant: ReadView,
            window_s: float = Query(3600, ge=60, le=MAX_WINDOW_S, allow_inf_nan=False,
                                    description="How far back, in seconds.")
            ) -> dict[str, Any]:
    return tenant.history(window_s=window_s)
