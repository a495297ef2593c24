"""Everything a request handler needs, built once from Settings by the app factory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from gpufleet.api.keys import KeyStore
from gpufleet.api.limits import RateLimiter
from gpufleet.api.locations import TenantLocations
from gpufleet.api.metrics import Metrics
from gpufleet.api.models import ModelPolicy
from gpufleet.api.queries import Reads
from gpufleet.api.readthrough import ReadThrough
from gpufleet.api.signing import Signer
from gpufleet.api.tenant import TenantView
from gpufleet.config import Settings
from gpufleet.index import Index
from gpufleet.queue import QueueDepth, TaskQueue, open_queue
from gpufleet.store import Location, open_location

T = TypeVar("T")


@dataclass(eq=False)
class Services:
    settings: Settings
    index: Index
    reads: Reads
    keys: KeyStore
    cache: ReadThrough
    signer: Signer
    limiter: RateLimiter
    locations: TenantLocations
    models: ModelPolicy
    clock: Callable[[], float] = time.time
    metrics: Metrics | None = None
    _queues: dict[str, TaskQueue] = field(default_factory=dict)
    _locations: dict[str, Location] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read (and its cache fill) from the event loop: inline when everything it
        touches is local (SQLite, whose WAL readers never wait for writers, and an
        in-process cache), else in a worker thread, so a slow server stalls no one else.
        Measured: handing short local reads to threads made p99 latency several times
        worse (the event loop waits for the GIL behind them)."""
        if self.inline_reads:
            return fn(*args)
        return await run_in_threadpool(fn, *args)

    @property
    def inline_reads(self) -> bool:
        """Whether reads are local enough to run on the event loop (see ``read``)."""
        return self.index.engine.dialect.name == "sqlite" and self.cache.inline

    def queue(self, model: str) -> TaskQueue:
        """The queue of a model, opened once and shared (queues are thread-safe)."""
        with self._lock:
            if model not in self._queues:
                self._queues[model] = open_queue(self.settings.queue, name=model)
            return self._queues[model]

    def location(self, uri: str) -> Location:
        with self._lock:
            if uri not in self._locations:
                self._locations[uri] = open_location(uri, settings=self.settings)
            return self._locations[uri]

    def view(self, tenant: str) -> TenantView:
        """The index as tenant sees it: what routes read through."""
        return TenantView(tenant, reads=self.reads, index=self.index, queue=self.queue)

    def depths(self) -> dict[str, QueueDepth]:
        """Queue depth of the models an operator configured (never tenants' own specs)."""
        return {model: self.queue(model).depth() for model in self.operator_models()}

    def operator_models(self) -> list[str]:
        return sorted({self.settings.model, *self.models.fixed_specs()})

    def close(self) -> None:
        with self._lock:
            for queue in self._queues.values():
                queue.close()
            self._queues.clear()
        self.index.close()


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def _services(request: Request) -> Services:
    # async: FastAPI would run a plain function in a worker thread, for nothing.
    return services(request)


Svc = Annotated[Services, Depends(_services)]
