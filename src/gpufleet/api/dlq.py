"""/v1/dlq: the tenant's dead-lettered tasks, and redrive (admin scope).

A queue can only redrive all of its dead letters at once, so redrive acts on
the queues of the models the tenant has dead letters on, other tenants'
tasks included: it is an operator's action, and says so in its answer. The
listing shows only the tenant's own tasks.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter

from gpufleet.api.auth import Admin
from gpufleet.api.context import Services, Svc
from gpufleet.api.schemas import DeadLetters, Redriven
from gpufleet.queue import DeadLetter

router = APIRouter(prefix="/v1/dlq", tags=["dead letters"])


def _body(letter: DeadLetter) -> tuple[str | None, list[str]]:
    try:
        body = json.loads(letter.body)
        job, keys = body.get("job"), body.get("keys", [])
    except (ValueError, AttributeError):
        return None, []
    ok = isinstance(job, str) and isinstance(keys, list)
    return (job, [k for k in keys if isinstance(k, str)]) if ok else (None, [])


def _letters(svc: Services) -> list[tuple[str, DeadLetter, str | None, list[str]]]:
    found = []
    for model in svc.index.models():
        for letter in svc.queue(model).dead_letters():
            found.append((model, letter, *_body(letter)))
    return found


@router.get("", response_model=DeadLetters, summary="The tenant's dead-lettered tasks")
def list_dead_letters(who: Admin,
                      svc: Svc) -> dict[str, Any]:
    letters = _letters(svc)
    own = svc.reads.tenant_jobs(who.tenant, [job for _, _, job, _ in letters if job])
    return {"dead_letters": [
        {"id": d.id, "job": job, "items": len(keys), "receives": d.receives, "model": model,
         "error": d.error, "died_at": d.died_at}
        for model, d, job, keys in letters if job in own]}


@router.post("/redrive", response_model=Redriven,
             summary="Put dead letters back on their queues (whole queues: see the docs)")
def redrive(who: Admin,
            svc: Svc) -> dict[str, int]:
    letters = _letters(svc)
    own = svc.reads.tenant_jobs(who.tenant, [job for _, _, job, _ in letters if job])
    models = sorted({model for model, _, job, _ in letters if job in own})
    moved = sum(svc.queue(model).redrive() for model in models)
    # Their items will change (failed -> done): drop what the cache holds about them.
    for model, _, job, keys in letters:
        owner = svc.reads.lookup(job) if job is not None and model in models else None
        if job is not None and owner is not None:
            svc.cache.delete(owner.tenant, "job", job)
            for key in keys:
                svc.cache.delete(owner.tenant, "item", f"{job}/{key}")
    return {"redriven": moved}
