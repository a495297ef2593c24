"""Serving one process's Prometheus registry on ``/metrics``, on the port it was given.

Each process (worker, controller) builds its own ``CollectorRegistry`` and
passes it here: nothing is registered in prometheus-client's global default
registry, so two registries in one process (tests, ``gpufleet demo``) never
collide and a library user's own metrics are never mixed with ours. The API
serves its registry through its own routes instead (``api/health.py``).

A port that is taken is refused with one line at start, not discovered later
as a worker whose metrics silently never appear.
"""

from __future__ import annotations

import errno
import logging

from prometheus_client import CollectorRegistry, start_http_server

from gpufleet.errors import ConfigError

log = logging.getLogger(__name__)


class MetricsServer:
    """``/metrics`` (any path, in fact) over HTTP from a daemon thread, until closed."""

    def __init__(self, registry: CollectorRegistry, port: int, *, addr: str = "0.0.0.0",
                 what: str = "--metrics-port") -> None:
        try:
            self._httpd, self._thread = start_http_server(port, addr=addr, registry=registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"{what} {port}: the port is in use (each process on this "
                                  "machine needs a port of its own)") from None
            raise ConfigError(f"{what} {port}: cannot serve metrics: {exc}") from None
        self.port = int(self._httpd.server_port)
        log.info("metrics on http://%s:%d/metrics", addr, self.port)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, port: int | None,
                  *, what: str = "--metrics-port") -> MetricsServer | None:
    """Serve the registry on this port; None (and nothing served) for 0 or None: off."""
    if not port:
        return None
    if not 0 < port < 65536:
        raise ConfigError(f"{what} {port}: expected a TCP port, 1 to 65535 (0: off)")
    return MetricsServer(registry, port, what=what)
