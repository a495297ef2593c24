"""A worker's life: bootstrap the model once, run the pipeline, drain on SIGTERM."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

from gpufleet import logs
from gpufleet.config import Settings
from gpufleet.domain import WorkerGone, WorkerState
from gpufleet.errors import DeviceLost
from gpufleet.index import Index
from gpufleet.metrics_server import serve_metrics
from gpufleet.models import load_tagger
from gpufleet.models.base import canonical_spec
from gpufleet.queue import open_queue
from gpufleet.sweeper import sweep
from gpufleet.worker.fleet_member import UsageMeter, complete_lifecycle_action, identify
from gpufleet.worker.gpustats import GpuStats
from gpufleet.worker.metrics import WorkerMetrics
from gpufleet.worker.notice import Notice, NoticeWatcher
from gpufleet.worker.observer import Observer, Observers
from gpufleet.worker.pipeline import Pipeline, PipelineStats
from gpufleet.worker.spans import span_observers

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Worker:
    def __init__(self, settings: Settings, *, model: str | None = None,
                 machine_gpus: int | None = None, metrics_port: int | None = None) -> None:
        """machine_gpus: this worker is one of that many, one per GPU of a machine
        (``gpufleet worker --gpus``): it carries its share of the machine's price, and the
        machine, not it, completes the lifecycle action when all have drained.
        metrics_port: serve Prometheus metrics there (None: GPUFLEET_METRICS_PORT; 0: off)."""
        self.settings = settings
        self.machine_gpus = machine_gpus
        self.model = canonical_spec(model or settings.model)  # the queue jobs of it use
        self.id = new_worker_id()
        logs.bind(worker=self.id)  # on every line this process logs from now on
        self.stop = threading.Event()
        self.index = Index(settings.db)
        self.queue = open_queue(settings.queue, name=self.model)
        self.tagger = load_tagger(self.model, settings)
        self.bootstrap_s: float | None = None
        # The fleet: who launched us, what we cost, how we spend our time, when we must go.
        self.identity = identify(settings.fleet)
        if machine_gpus:
            self.identity = replace(self.identity,
                                    price_per_h=self.identity.price_per_h / machine_gpus)
        self.meter = UsageMeter()
        self.items: Callable[[], int] = lambda: 0
        self.notice: Notice | None = None
        self.watcher = NoticeWatcher(settings.fleet, self._on_notice)
        self.gpu = GpuStats()  # NVML, where there is a GPU: how busy it was while we worked
        self.gpu_busy: list[float] = []
        port = settings.worker.metrics_port if metrics_port is None else metrics_port
        self.metrics = WorkerMetrics(model=self.model, gpu=self.gpu) if port else None
        # Started here, before the model loads, so a long bootstrap is watched as one.
        self.metrics_server = serve_metrics(self.metrics.registry, port) if self.metrics else None

    def _on_notice(self, notice: Notice) -> None:
        self.notice = notice
        self.stop.set()

    def _grace_s(self) -> float:
        """GPUFLEET_DRAIN_GRACE_S, cut short to end a little before a notice's deadline."""
        grace = self.settings.worker.drain_grace_s
        if self.notice is not None and self.notice.deadline is not None:
            left = self.notice.deadline - time.time()
            grace = min(grace, left - min(10.0, left / 4))
        return max(0.0, grace)

    def _seen(self, state: WorkerState | WorkerGone) -> None:
        reading = self.gpu.read()
        if reading is not None and state is WorkerState.BUSY:
            self.gpu_busy.append(reading.util_pct)
        if self.notice is not None and self.notice.interruption:
            state = WorkerGone.INTERRUPTED  # from now on the controller avoids spot a while
        try:
            extra = {**self.identity.columns(), **self.meter.columns(), "items": self.items(),
                     "gpus": self.machine_gpus}
            if reading is not None:
                extra.update(gpu_util_pct=reading.util_pct, gpu_memory_mb=reading.memory_mb)
            self.index.worker_seen(self.id, host=socket.gethostname(), pid=os.getpid(),
                                   model=self.model, state=state, bootstrap_s=self.bootstrap_s,
                                   extra=extra)
        except Exception as exc:  # the registry is advisory; work goes on without it
            log.debug("cannot update worker registry: %s", exc)

    def install_signal_handlers(self) -> None:
        def drain(signum: int, _frame: FrameType | None) -> None:
            log.info("%s: draining (stop receiving, finish or release in-flight work)",
                     signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, drain)
        signal.signal(signal.SIGINT, drain)

    def run(self, *, max_idle_s: float | None = None) -> PipelineStats:
        sweep(self.settings, self.index, model=self.model)  # a worker starting looks at its jobs
        self.meter.observe(WorkerState.BOOTING)
        self._seen(WorkerState.BOOTING)
        self.watcher.start()
        t0 = time.perf_counter()
        self.tagger.bootstrap()
        self.bootstrap_s = time.perf_counter() - t0
        log.info("worker %s bootstrapped %s in %.2f s", self.id, self.model, self.bootstrap_s)
        observers: list[Observer] = []  # whoever watches the pipeline: metrics, traces
        if self.metrics is not None:
            self.metrics.bootstrapped(self.bootstrap_s)
            observers.append(self.metrics)
        pipeline = Pipeline(tagger=self.tagger, queue=self.queue, index=self.index,
                            settings=self.settings, worker_id=self.id, on_state=self._states(),
                            drain_grace_s=self._grace_s,
                            observer=Observers([*observers, *span_observers(self.id)]),
                            on_idle=lambda: sweep(self.settings, self.index, model=self.model))
        self.items = lambda: pipeline.stats.items
        if self.metrics is not None:
            self.metrics.in_flight = lambda: pipeline.ledger.in_flight
        try:
            stats = pipeline.run(stop=self.stop, max_idle_s=max_idle_s)
        finally:
            self.watcher.close()
            self._seen(WorkerGone.STOPPED)
            self.queue.close()
            self.index.close()
            if self.metrics_server is not None:
                self.metrics_server.close()
        if self.stop.is_set() and not self.machine_gpus:
            # Told to go (not idle): on EC2, let the instance terminate now.
            complete_lifecycle_action(self.settings.fleet, self.identity.instance)
        log.info("worker %s stopped after %d item(s) in %d task(s)", self.id, stats.items,
                 stats.tasks)
        if self.gpu_busy:
            log.info("GPU busy %.0f %% on average while working (%d NVML readings)",
                     sum(self.gpu_busy) / len(self.gpu_busy), len(self.gpu_busy))
        if pipeline.lost is not None:  # an error exit: its supervisor starts a new process
            raise DeviceLost(f"{pipeline.lost} (the worker handed its tasks back and stopped)")
        return stats

    def _states(self) -> Callable[[WorkerState], None]:
        reporter = StateReporter(self._seen)

        def observe(state: WorkerState) -> None:
            self.meter.observe(state)
            reporter(state)

        return observe


class StateReporter:
    """Reports the worker's state to the registry on change, and every few seconds."""

    def __init__(self, report: Callable[[WorkerState], None], every_s: float = 5.0) -> None:
        self.report, self.every_s = report, every_s
        self.state: WorkerState | None = None
        self.at = 0.0

    def __call__(self, state: WorkerState) -> None:
        now = time.monotonic()
        if state != self.state or now - self.at >= self.every_s:
            self.state, self.at = state, now
            self.report(state)

