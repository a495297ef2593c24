"""/v1/fleet: the tenant's models (open jobs, pending items) and the workers serving them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gpufleet.api.auth import ReadView
from gpufleet.api.schemas import Fleet

router = APIRouter(prefix="/v1/fleet", tags=["fleet"])


@router.get("", response_model=Fleet, summary="The tenant's models and their workers")
def fleet(tenant: ReadView) -> dict[str, Any]:
    return tenant.fleet()
