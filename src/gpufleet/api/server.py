"""How the API is served: uvicorn on h11, with a deadline for each request to arrive.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) and h11
refuses headers over 16 KiB, but a client that sends a request slowly (a
header line every few seconds, a body a byte at a time) holds its connection
forever: enough of them starve everyone else. Here a request must arrive
whole, headers and body, within ``GPUFLEET_API_REQUEST_TIMEOUT_S`` of its
first chance to (the connection made, or the previous response sent);
otherwise the connection is closed. Work after the request has arrived is not
limited by it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from gpufleet.config import Settings
from gpufleet.errors import ConfigError

KEEP_ALIVE_S = 5  # an idle connection between requests (uvicorn's default)
MAX_HEADER_BYTES = 16 * 1024  # request line and headers; larger: 400


class _RequestDeadline(H11Protocol):
    """H11Protocol that closes a connection whose request has not arrived in time."""

    timeout_s = 60.0  # set per server by ``server_config``

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
            self._disarm()  # the request is in: what follows is the app's time

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(self.timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            assert self._deadline is not None
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.conn.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED) \
                and not self.transport.is_closing():
            self.transport.close()


class PathOnly(logging.Filter):
    """The access log names a request's path, never its query: a signed URL carries its
    signature there, and a careless client may put a key in one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            args[2] = str(args[2]).split("?", 1)[0]  # (client, method, path, version, status)
            record.args = tuple(args)
        return True


def server_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration of an API process (options: host, port, log_level...)."""
    if not settings.server.request_timeout_s > 0:
        raise ConfigError("GPUFLEET_API_REQUEST_TIMEOUT_S must be positive")
    protocol = type("RequestDeadline", (_RequestDeadline,),
                    {"timeout_s": settings.server.request_timeout_s})
    # Forwarded headers are read by the API's own client filter, from trusted proxies only.
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, PathOnly) for f in access.filters):
        access.addFilter(PathOnly())
    # log_config=None: uvicorn's records go to the process's own handler (logs.py), as
    # JSON lines or Rich like every other, rather than to handlers of uvicorn's own.
    return uvicorn.Config(app, http=protocol, ws="none", lifespan="on", proxy_headers=False,
                          server_header=False, access_log=True, log_config=None,
                          timeout_keep_alive=KEEP_ALIVE_S,
                          h11_max_incomplete_event_size=MAX_HEADER_BYTES, **options)
