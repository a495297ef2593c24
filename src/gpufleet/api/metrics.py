"""Prometheus metrics: one registry per application (no global state).

Per request: ``gpufleet_api_requests_total{method,route,status}`` and
``gpufleet_api_request_duration_seconds{route}``, labelled by route template
(never the raw path, so the label set stays small). At scrape time, from the
queue and the index: ``gpufleet_queue_tasks{model,state}`` and
``gpufleet_items_processed_total{status}`` (done, failed) and ``gpufleet_items_pending``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpufleet.errors import GpufleetError
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
        depth = GaugeMetricFamily("gpufleet_queue_tasks", "Tasks on the queue, by state",
                                  labels=["model", "state"])
        processed = CounterMetricFamily("gpufleet_items_processed", "Items processed, by "
                                        "outcome (failures: status=failed)", labels=["status"])
        pending = GaugeMetricFamily("gpufleet_items_pending", "Items not processed yet")
        try:
            for model, d in self.depths().items():
                for state, n in (("queued", d.queued), ("in_flight", d.in_flight),
                                 ("dead", d.dead)):
                    depth.add_metric([model, state], n)
            counts = self.item_counts()
            for status in ("done", "failed"):
                processed.add_metric([status], counts.get(status, 0))
            pending.add_metric([], counts.get("pending", 0))
        except GpufleetError as exc:
            log.warning("metrics: %s", exc)
        yield depth
        yield processed
        yield pending


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

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(self.clock() - started)
