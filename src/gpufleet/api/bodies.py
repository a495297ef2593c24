"""Request bodies parsed as untrusted JSON: deep nesting, huge integers, NaN refused (422).

FastAPI parses a body with ``Request.json``; routes of ``SafeJsonRoute`` get a
request whose ``json`` is ``gpufleet.jsonsafe.loads``, so a hostile body is a
4xx with one line, never a RecursionError or a 500. (Other bad JSON raises
JSONDecodeError, which FastAPI answers with 422 as before.)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from gpufleet.jsonsafe import JsonRefused, loads


class SafeJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads(await self.body())
            except JsonRefused as exc:
                raise HTTPException(422, f"body: refused: {exc}") from None
            except UnicodeDecodeError:
                raise HTTPException(422, "body: not UTF-8 JSON") from None
        return self._json


class SafeJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def safe(request: Request) -> Response:
            return await handler(SafeJsonRequest(request.scope, request.receive))

        return safe
