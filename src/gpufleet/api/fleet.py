"""/v1/fleet: live workers by state and queue depth per model, for the dashboard."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter

from gpufleet.api.auth import Reader
from gpufleet.api.context import Svc
from gpufleet.api.schemas import Fleet

router = APIRouter(prefix="/v1/fleet", tags=["fleet"])


@router.get("", response_model=Fleet, summary="Workers by state, tasks by model")
def fleet(_: Reader,
          svc: Svc) -> dict[str, Any]:
    workers = Counter(w.state for w in svc.index.live_workers())
    queues = {model: {"queued": d.queued, "in_flight": d.in_flight, "dead": d.dead}
              for model, d in svc.depths().items()}
    return {"workers": dict(workers), "queues": queues}
