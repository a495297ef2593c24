"""A worker's Prometheus metrics: what its pipeline tells the observer, counted.

The pipeline reports in lists (a piece, a batch, a write), so each hook here is
one or two counter or histogram updates per list, never per item. Stage
histograms therefore observe one call (a piece of up to 8 items fetched or
decoded, one model batch, one write batch), not one item:
``gpufleet_worker_stage_items_total`` beside them gives seconds per item as
``rate(..._stage_seconds_sum) / rate(..._stage_items_total)``.

Every series is labelled with the model's name only (``efficientnet-lite0``,
``synthetic``), never its full spec: parameters would make a series per
spelling. Prometheus adds the worker (``instance``) itself. What is a level
rather than an event (items in flight, the GPU) is read when Prometheus
scrapes; GPU series exist only where NVML sees a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpufleet.domain import ItemStatus, WorkerState
from gpufleet.models.base import parse_spec
from gpufleet.worker.gpustats import GpuStats
from gpufleet.worker.observer import Observer, Stage, TaskEnd

if TYPE_CHECKING:
    from gpufleet.worker.ledger import Run
    from gpufleet.worker.writer import Outcome

# A piece or a batch: from a fraction of a millisecond (synthetic) to seconds (a big batch
# on a CPU, a slow store).
STAGE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)
FILL_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
# Served only where NVML sees a GPU (named here for whoever checks a dashboard on a CPU).
GPU_UTILIZATION = "gpufleet_worker_gpu_utilization_ratio"
GPU_MEMORY = "gpufleet_worker_gpu_memory_used_bytes"


def model_name(spec: str) -> str:
    """The label value for a model: its name without parameters (bounded cardinality)."""
    return parse_spec(spec)[0]


class WorkerMetrics(Observer):
    def __init__(self, *, model: str, gpu: GpuStats | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.model = model_name(model)
        # Set once the pipeline exists: its ledger knows the items in flight.
        self.in_flight: Callable[[], int] = lambda: 0
        r, m = self.registry, ["model"]
        self._items = Counter("gpufleet_worker_items", "Items out of the pipeline, by outcome: "
                              "done, failed (the item's own fault, recorded), transient (its "
                              "task is retried)", ["model", "outcome"], registry=r)
        self._stage_s = Histogram("gpufleet_worker_stage_seconds", "Seconds one stage took "
                                  "over one piece or batch of items (one observation per call, "
                                  "not per item)", ["model", "stage"],
                                  buckets=STAGE_BUCKETS_S, registry=r)
        self._stage_items = Counter("gpufleet_worker_stage_items", "Items through each stage",
                                    ["model", "stage"], registry=r)
        self._fill = Histogram("gpufleet_worker_batch_fill_ratio", "Inputs in a model batch "
                               "over the batch size the model takes", m, buckets=FILL_BUCKETS,
                               registry=r)
        self._tasks_started = Counter("gpufleet_worker_tasks_started", "Leased tasks into the "
                                      "pipeline", m, registry=r)
        self._tasks_ended = Counter("gpufleet_worker_tasks_ended", "Tasks out of the pipeline, "
                                    "by how: acked, retried, released (drain), lost (lease "
                                    "expired)", ["model", "end"], registry=r)
        self._extended = Counter("gpufleet_worker_lease_extensions", "Leases a heartbeat "
                                 "extended", m, registry=r)
        self._lost = Counter("gpufleet_worker_leases_lost", "Leases a heartbeat found gone "
                             "(another worker has the task now)", m, registry=r)
        self._bootstrap = Gauge("gpufleet_worker_bootstrap_seconds", "Seconds the model took "
                                "to bootstrap (load, compile, warm up); absent until it has",
                                m, registry=r)
        self._state = Gauge("gpufleet_worker_state", "1 for the state the worker is in, 0 for "
                            "the others", ["model", "state"], registry=r)
        Gauge("gpufleet_worker_items_in_flight", "Items received and not yet written", m,
              registry=r).labels(self.model).set_function(lambda: self.in_flight())
        # Every series from the start: rate() and increase() need the zero before the first.
        for end in TaskEnd:
            self._tasks_ended.labels(self.model, end.value)
        self._done, self._failed, self._transient = (
            self._items.labels(self.model, outcome) for outcome in ("done", "failed", "transient"))
        # The stages' series, looked up once: the hooks below run per piece and batch.
        self._stages = {stage: (self._stage_s.labels(self.model, stage.value),
                                self._stage_items.labels(self.model, stage.value))
                        for stage in Stage}
        for counter in (self._tasks_started, self._extended, self._lost):
            counter.labels(self.model)
        self.state(WorkerState.BOOTING)
        if gpu is not None and gpu.available:
            r.register(_GpuCollector(gpu, self.model))

    def bootstrapped(self, seconds: float) -> None:
        self._bootstrap.labels(self.model).set(seconds)

    # Observer ----------------------------------------------------------------

    def task_started(self, run: Run) -> None:
        self._tasks_started.labels(self.model).inc()

    def stage(self, stage: Stage, runs: Sequence[Run], items: int, started: float,
              seconds: float) -> None:
        seconds_of, items_of = self._stages[stage]
        seconds_of.observe(seconds)
        items_of.inc(items)

    def batch(self, size: int, capacity: int) -> None:
        self._fill.labels(self.model).observe(size / max(1, capacity))

    def written(self, outcomes: Sequence[Outcome]) -> None:
        done = failed = transient = 0
        for o in outcomes:  # one pass of plain arithmetic; three counter updates per batch
            if o.run.released:
                continue  # not written: the task went back whole, and is counted where it ends
            if o.transient is not None or o.result is None:
                transient += 1  # including a result the index could not record
            elif o.result.status is ItemStatus.DONE:
                done += 1
            else:
                failed += 1
        for child, n in ((self._done, done), (self._failed, failed),
                         (self._transient, transient)):
            if n:
                child.inc(n)

    def task_ended(self, run: Run, end: TaskEnd) -> None:
        self._tasks_ended.labels(self.model, end.value).inc()

    def lease_extended(self, kept: bool) -> None:
        (self._extended if kept else self._lost).labels(self.model).inc()

    def state(self, state: WorkerState) -> None:
        for s in WorkerState:
            self._state.labels(self.model, s.value).set(1 if s is state else 0)


class _GpuCollector(Collector):
    """NVML read when Prometheus scrapes: the mean utilisation and the memory of our GPUs."""

    def __init__(self, gpu: GpuStats, model: str) -> None:
        self.gpu, self.model = gpu, model

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        reading = self.gpu.read()
        if reading is None:  # a GPU fell off the bus: no sample rather than a false zero
            return
        util = GaugeMetricFamily(GPU_UTILIZATION, "Share of NVML's "
                                 "last sampling period a kernel ran, mean over this worker's "
                                 "GPUs (0 to 1)", labels=["model"])
        util.add_metric([self.model], reading.util_pct / 100)
        memory = GaugeMetricFamily(GPU_MEMORY, "GPU memory in "
                                   "use on this worker's GPUs (every process's), summed",
                                   labels=["model"])
        memory.add_metric([self.model], reading.memory_mb * 2**20)
        yield util
        yield memory
