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
from types import FrameType

from gpufleet.config import Settings
from gpufleet.index import Index
from gpufleet.models import load_tagger
from gpufleet.queue import open_queue
from gpufleet.worker.pipeline import Pipeline, PipelineStats

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Worker:
    def __init__(self, settings: Settings, *, model: str | None = None) -> None:
        self.settings = settings
        self.model = model or settings.model
        self.id = new_worker_id()
        self.stop = threading.Event()
        self.index = Index(settings.db)
        self.queue = open_queue(settings.queue, name=self.model)
        self.tagger = load_tagger(self.model, settings)
        self.bootstrap_s: float | None = None

    def _seen(self, state: str) -> None:
        try:
            self.index.worker_seen(self.id, host=socket.gethostname(), pid=os.getpid(),
                                   model=self.model, state=state, bootstrap_s=self.bootstrap_s)
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
        self._seen("booting")
        t0 = time.perf_counter()
        self.tagger.bootstrap()
        self.bootstrap_s = time.perf_counter() - t0
        log.info("worker %s bootstrapped %s in %.2f s", self.id, self.model, self.bootstrap_s)
        pipeline = Pipeline(tagger=self.tagger, queue=self.queue, index=self.index,
                            settings=self.settings, worker_id=self.id, on_state=self._states())
        try:
            stats = pipeline.run(stop=self.stop, max_idle_s=max_idle_s)
        finally:
            self._seen("stopped")
            self.queue.close()
            self.index.close()
        log.info("worker %s stopped after %d item(s) in %d task(s)", self.id, stats.items,
                 stats.tasks)
        return stats

    def _states(self) -> StateReporter:
        return StateReporter(self._seen)


class StateReporter:
    """Reports the worker's state to the registry on change, and every few seconds."""

    def __init__(self, report: Callable[[str], None], every_s: float = 5.0) -> None:
        self.report, self.every_s = report, every_s
        self.state, self.at = "", 0.0

    def __call__(self, state: str) -> None:
        now = time.monotonic()
        if state != self.state or now - self.at >= self.every_s:
            self.state, self.at = state, now
            self.report(state)

