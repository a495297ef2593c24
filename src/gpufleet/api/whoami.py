"""/v1/key: what the key in hand may do, so a client (the dashboard) offers only that."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gpufleet.api.auth import AnyKey
from gpufleet.api.schemas import KeyView

router = APIRouter(prefix="/v1/key", tags=["keys"])


@router.get("", response_model=KeyView, summary="The key's id, tenant and scopes")
def whoami(who: AnyKey) -> dict[str, Any]:
    return {"id": who.key_id, "tenant": who.tenant, "scopes": sorted(who.scopes)}
