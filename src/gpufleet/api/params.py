"""Unknown query parameters are refused (422), so a misspelt filter never silently widens
a listing: ``?stauts=failed`` is an error, not every item."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request

from gpufleet.api.auth import KEY_PARAMETERS


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_query(request: Request) -> None:
    """A router dependency: every query parameter is one the operation declares."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None or not request.query_params:
        return
    allowed = _query_names(dependant)
    for name, value in request.query_params.multi_items():
        if name in allowed or name.lower() in KEY_PARAMETERS or value.startswith("gfk_"):
            continue  # (a key in the URL is refused with 401 by auth.require)
        takes = ", ".join(sorted(allowed)) or "none"
        raise HTTPException(422, f"unknown query parameter {name!r} (this operation takes: "
                            f"{takes})")
