"""/v1/dlq: the tenant's dead-lettered tasks, and their redrive (admin scope).

A queue redrives all of its dead letters at once, so a tenant's admin key
redrives a model's queue only when every dead letter on it is the tenant's;
a queue that also holds another tenant's is left alone and named in the
answer (an operator redrives it with the CLI, across tenants).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gpufleet.api.auth import AdminView
from gpufleet.api.context import Svc
from gpufleet.api.schemas import DeadLetters, Redriven

router = APIRouter(prefix="/v1/dlq", tags=["dead letters"])


@router.get("", response_model=DeadLetters, summary="The tenant's dead-lettered tasks")
def list_dead_letters(tenant: AdminView) -> dict[str, Any]:
    return {"dead_letters": [
        {"id": lt.letter.id, "job": lt.job, "items": len(lt.keys),
         "receives": lt.letter.receives, "model": lt.model, "error": lt.letter.error,
         "died_at": lt.letter.died_at} for lt in tenant.dead_letters()]}


@router.post("/redrive", response_model=Redriven,
             summary="Put the tenant's dead letters back on their queues")
def redrive(tenant: AdminView, svc: Svc) -> dict[str, Any]:
    moved, shared = tenant.redrive()
    # Their items will change (failed -> done): drop what the cache holds about them.
    for letter in moved:
        if letter.job is not None:
            svc.cache.delete(tenant.tenant, "job", letter.job)
            for key in letter.keys:
                svc.cache.delete(tenant.tenant, "item", f"{letter.job}/{key}")
    return {"redriven": len(moved), "left_shared": shared}
