"""Prometheus metrics: one registry per application (no global state).

Per request: ``gpufleet_api_requests_total{method,route,status}`` and
``gpufleet_api_request_duration_seconds{route}``, labelled by route template
or, for files, by the path a static app is mounted at (``/dashboard``): never
the raw path, so the label set stays small; what matched nothing is
``unmatched``. At scrape time, from the queue and the index:
``gpufleet_queue_tasks{model,state}`` (model: the name, never the spec with
its parameters, summed over the operator's specs of it) and
``gpufleet_items{status}`` (done, failed, pending). Item counts are recounted
from the index and go down when a redrive reopens items, so they are gauges:
a counter that goes down reads as a reset to Prometheus. What each worker
processed, as counters that never go down, is ``gpufleet_worker_items_total``
on the workers' own ``/metrics``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpufleet.errors import GpufleetError
from gpufleet.models.base import parse_spec
from gpufleet.queue import QueueDepth

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self, *, depths: Callable[[], Mapping[str, QueueDepth]],
                 item_counts: Callable[[], Mapping[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("gpufleet_api_requests", "HTTP requests served",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("gpufleet_api_request_duration_seconds",
                                 "Time to answer a request", ["route"], buckets=_BUCKETS_S,
                                 registry=self.registry)
        self.rate_limited = Counter("gpufleet_api_rate_limited",
                                    "Requests refused with 429", registry=self.registry)
        self.registry.register(_BacklogCollector(depths, item_counts))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _BacklogCollector(Collector):
    """Queue depth and item counts, read when Prometheus scrapes."""

    def __init__(self, depths: Callable[[], Mapping[str, QueueDepth]],
                 item_counts: Callable[[], Mapping[str, int]]) -> None:
        self.depths, self.item_counts = depths, item_counts

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("gpufleet_queue_tasks", "Tasks on the queue, by model name "
                                  "and state (queued, in_flight, dead)",
                                  labels=["model", "state"])
        items = GaugeMetricFamily("gpufleet_items", "Items of every job in the index, by "
                                  "status (done, failed, pending); goes down after a redrive",
                                  labels=["status"])
        try:
            tasks: dict[tuple[str, str], int] = defaultdict(int)  # a name's specs summed
            for spec, d in self.depths().items():
                name = parse_spec(spec)[0]
                for state, n in (("queued", d.queued), ("in_flight", d.in_flight),
                                 ("dead", d.dead)):
                    tasks[name, state] += n
            for (name, state), n in sorted(tasks.items()):
                depth.add_metric([name, state], n)
            counts = self.item_counts()
            for status in ("done", "failed", "skipped", "pending"):
                items.add_metric([status], counts.get(status, 0))
        except GpufleetError as exc:
            log.warning("metrics: %s", exc)
        yield depth
        yield items


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.app, self.metrics, self.clock = app, metrics, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        status = 500
        path = scope["path"]  # as asked: a mount may rewrite it on the way in

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            route = route_label(scope, path)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(self.clock() - started)


def route_label(scope: Scope, path: str) -> str:
    """The route template a request matched, the path of the mount that served it (static
    files: ``/dashboard``), or ``unmatched``."""
    template = getattr(scope.get("route"), "path", None)
    if template:
        return str(template)
    # A Mount sets no "route"; the application's mounts are few and fixed: label by them.
    for route in getattr(scope.get("app"), "routes", ()):
        if isinstance(route, Mount) and (path == route.path or
                                         path.startswith(route.path.rstrip("/") + "/")):
            return str(route.path)
    return "unmatched"
