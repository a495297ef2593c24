"""Everything a request handler needs, built once from Settings by the app factory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
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
from gpufleet.api.queues import QueueHandles
from gpufleet.api.quotas import Quotas
from gpufleet.api.readthrough import ReadThrough
from gpufleet.api.signing import Signer
from gpufleet.api.tenant import TenantView
from gpufleet.config import Settings
from gpufleet.index import Index
from gpufleet.models.base import canonical_spec
from gpufleet.queue import QueueDepth, TaskQueue
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
    queues: QueueHandles
    quotas: Quotas
    clock: Callable[[], float] = time.time
    metrics: Metrics | None = None
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

    async def read_off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read whose cost grows with the data (a job's counts and timing) in a
        worker thread, whatever the index: inline, one poller of a big job's view would
        hold up every other request, /healthz included."""
        return await run_in_threadpool(fn, *args)

    @property
    def inline_reads(self) -> bool:
        """Whether reads are local enough to run on the event loop (see ``read``)."""
        return self.index.engine.dialect.name == "sqlite" and self.cache.inline

    def queue(self, model: str) -> AbstractContextManager[TaskQueue]:
        """The queue of a model for a block: handles are shared (queues are thread-safe),
        reused, and bounded in number (``queues.py``)."""
        return self.queues.use(model)

    def location(self, uri: str) -> Location:
        with self._lock:
            if uri not in self._locations:
                self._locations[uri] = open_location(uri, settings=self.settings)
            return self._locations[uri]

    def view(self, tenant: str, *, key_id: str = "") -> TenantView:
        """The index as tenant sees it (through key_id): what routes read through."""
        return TenantView(tenant, reads=self.reads, index=self.index, queue=self.queue,
                          key_id=key_id)

    def depths(self) -> dict[str, QueueDepth]:
        """Queue depth of the models an operator configured (never tenants' own specs)."""
        found = {}
        for model in self.operator_models():
            with self.queue(model) as queue:
                found[model] = queue.depth()
        return found

    def operator_models(self) -> list[str]:
        return sorted({canonical_spec(self.settings.model), *self.models.fixed_specs()})

    def close(self) -> None:
        self.queues.close()
        self.index.close()


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def _services(request: Request) -> Services:
    # async: FastAPI would run a plain function in a worker thread, for nothing.
    return services(request)


Svc = Annotated[Services, Depends(_services)]
