"""/v1/notify/targets: the tenant's notification targets (webhooks, SNS topics).

A target registered here hears of the key's tenant's jobs (or of one of them):
created, finished, and progress if asked. A webhook's signing secret is in the
answer to its creation and never again. Another tenant's targets are not found.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from gpufleet.api.auth import ReadView, SubmitView
from gpufleet.api.context import Svc
from gpufleet.notify.targets import TargetNotFound, TargetStore

router = APIRouter(prefix="/v1/notify/targets", tags=["notifications"])


class TargetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(..., max_length=2048, description="An https:// webhook URL or an "
                         "SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC).")
    job: str | None = Field(None, max_length=64, description="Only this job's events; "
                            "default: every job of the tenant created from now on.")
    events: list[str] | None = Field(None, max_length=3, description="Some of created, "
                                     "finished, progress (default created and finished).")
    progress_s: float | None = Field(None, ge=1, le=86400, allow_inf_nan=False,
                                     description="Progress at most this often (adds progress).")


class TargetView(BaseModel):
    id: str
    tenant: str
    job: str | None
    kind: str = Field(..., description="webhook or sns")
    address: str
    events: list[str]
    progress_s: float | None
    created_at: float


class NewTarget(TargetView):
    secret: str | None = Field(None, description="A webhook's signing secret: shown once.")


class TargetList(BaseModel):
    targets: list[TargetView]


@router.post("", status_code=201, response_model=NewTarget,
             summary="Register a target; a webhook's signing secret is shown once")
def create_target(body: TargetSpec, tenant: SubmitView, svc: Svc) -> dict[str, Any]:
    if body.job is not None:
        tenant.owner(body.job)  # another tenant's job is not found
    target = TargetStore(svc.index, svc.settings.notify).add(
        body.address, tenant=tenant.tenant, job_id=body.job,
        events=",".join(body.events) if body.events else None, progress_s=body.progress_s)
    return {**target.to_json(), "secret": target.secret}


@router.get("", response_model=TargetList, summary="The tenant's targets (no secrets)")
def list_targets(tenant: ReadView, svc: Svc) -> dict[str, Any]:
    targets = TargetStore(svc.index, svc.settings.notify).listed(tenant=tenant.tenant)
    return {"targets": [t.to_json() for t in targets]}


@router.delete("/{target_id}", response_model=TargetView, summary="Remove a target")
def delete_target(target_id: str, tenant: SubmitView, svc: Svc) -> dict[str, Any]:
    try:
        return TargetStore(svc.index, svc.settings.notify).remove(
            target_id, tenant=tenant.tenant).to_json()
    except TargetNotFound as exc:
        raise HTTPException(404, str(exc)) from None
