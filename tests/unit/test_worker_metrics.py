"""A worker's metrics count what a real pipeline did; the registry is served over HTTP."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

import pytest

from gpufleet.domain import WorkerState
from gpufleet.errors import ConfigError
from gpufleet.jobs import JobRequest, create_job
from gpufleet.metrics_server import serve_metrics
from gpufleet.models import load_tagger
from gpufleet.queue import open_queue
from gpufleet.worker.gpustats import GpuStats
from gpufleet.worker.ledger import Run
from gpufleet.worker.metrics import WorkerMetrics
from gpufleet.worker.observer import Observer, Observers, TaskEnd
from gpufleet.worker.pipeline import Pipeline
from tests.conftest import Home, write_files
from tests.pipeline_jobs import MODEL, observed_pipeline, submit_files
from tests.servers import free_port


def run_job(home: Home, metrics: WorkerMetrics, *, items: int, missing: int) -> Pipeline:
    submit_files(home, items=items, missing=missing)
    pipeline = observed_pipeline(home, metrics)
    metrics.in_flight = lambda: pipeline.ledger.in_flight
    pipeline.run(stop=threading.Event(), max_idle_s=0.5)
    return pipeline


def test_a_pipeline_run_is_counted_by_outcome_stage_batch_and_task(home: Home) -> None:
    # Given a worker's metrics watching a real pipeline
    metrics = WorkerMetrics(model=MODEL)
    value = metrics.registry.get_sample_value

    # When it runs a job of 37 items, 3 of them missing
    run_job(home, metrics, items=37, missing=3)

    # Then the items are counted by outcome, under the model's name without its parameters
    def items(outcome: str) -> float | None:
        return value("gpufleet_worker_items_total", {"model": "synthetic", "outcome": outcome})

    assert (items("done"), items("failed"), items("transient")) == (37, 3, 0)
    # every stage's items, and one histogram observation per piece or batch
    def stage(name: str, stage: str) -> float | None:
        return value(name, {"model": "synthetic", "stage": stage})

    assert [stage("gpufleet_worker_stage_items_total", s)
            for s in ("fetch", "decode", "infer", "write")] == [40, 37, 37, 40]
    batches = stage("gpufleet_worker_stage_seconds_count", "infer")
    assert batches is not None and 10 <= batches <= 37  # batches of 4 at most
    assert (stage("gpufleet_worker_stage_seconds_count", "fetch") or 0) >= 5  # pieces of 8
    # batch fill: one observation per batch, each at most full
    assert value("gpufleet_worker_batch_fill_ratio_count", {"model": "synthetic"}) == batches
    assert value("gpufleet_worker_batch_fill_ratio_sum", {"model": "synthetic"}) == 37 / 4
    # every task started ended acked; none lost, retried or released
    started = value("gpufleet_worker_tasks_started_total", {"model": "synthetic"})
    assert started is not None and started >= 1
    ends = {end: value("gpufleet_worker_tasks_ended_total", {"model": "synthetic", "end": end})
            for end in ("acked", "retried", "released", "lost")}
    assert ends == {"acked": started, "retried": 0, "released": 0, "lost": 0}
    assert value("gpufleet_worker_leases_lost_total", {"model": "synthetic"}) == 0
    # nothing left in flight, read from the ledger now; one state at a time
    assert value("gpufleet_worker_items_in_flight", {"model": "synthetic"}) == 0
    states = {s: value("gpufleet_worker_state", {"model": "synthetic", "state": s.value})
              for s in WorkerState}
    assert sum(v or 0 for v in states.values()) == 1
    assert states[WorkerState.BOOTING] == 0


class HealOnRetry(Observer):
    """Lets FlakyTagger's inference work once a task of it has been retried."""

    def __init__(self, heal_file: Path) -> None:
        self.heal_file = heal_file

    def task_ended(self, run: Run, end: TaskEnd) -> None:
        if end is TaskEnd.RETRIED:
            self.heal_file.touch()


def test_a_transient_failure_is_counted_and_its_task_retried(home: Home) -> None:
    # Given a model whose inference fails until a task of it has been retried once
    heal = home.path / "healed"
    model = f"tests.e2e.plugins:FlakyTagger?heal_file={heal}"
    metrics = WorkerMetrics(model=model)
    value = metrics.registry.get_sample_value
    m = {"model": "tests.e2e.plugins:FlakyTagger"}
    settings = home.settings
    keys = write_files(home.path / "in", 8)
    index = home.index()
    create_job(settings, index, JobRequest(items=keys, input=(home.path / "in").as_uri() + "/",
                                           model=model))
    # When a pipeline runs it
    pipeline = Pipeline(tagger=load_tagger(model, settings),
                        queue=open_queue(settings.queue, name=model), index=index,
                        settings=settings, worker_id="w-test",
                        observer=Observers([metrics, HealOnRetry(heal)]))
    pipeline.run(stop=threading.Event(), max_idle_s=2.0)
    # Then the first try's items are transient, the second's done, and the task was retried
    # once, then acked
    assert value("gpufleet_worker_items_total", {**m, "outcome": "transient"}) == 8
    assert value("gpufleet_worker_items_total", {**m, "outcome": "done"}) == 8
    assert value("gpufleet_worker_tasks_ended_total", {**m, "end": "retried"}) == 1
    assert value("gpufleet_worker_tasks_ended_total", {**m, "end": "acked"}) == 1
    assert value("gpufleet_worker_tasks_started_total", m) == 2
    [job] = index.jobs()
    assert job.counts.done == 8


def test_a_new_worker_says_booting_and_bootstrap_seconds_once_known() -> None:
    metrics = WorkerMetrics(model="efficientnet-lite0?device=cpu")
    value = metrics.registry.get_sample_value
    labels = {"model": "efficientnet-lite0"}
    assert value("gpufleet_worker_state", {**labels, "state": "booting"}) == 1
    assert value("gpufleet_worker_bootstrap_seconds", labels) is None
    metrics.bootstrapped(12.5)
    assert value("gpufleet_worker_bootstrap_seconds", labels) == 12.5


def test_gpu_series_appear_only_where_nvml_sees_a_gpu() -> None:
    gpu = GpuStats()
    metrics = WorkerMetrics(model=MODEL, gpu=gpu)
    utilisation = metrics.registry.get_sample_value("gpufleet_worker_gpu_utilization_ratio",
                                                    {"model": "synthetic"})
    if gpu.available:
        assert utilisation is not None and 0 <= utilisation <= 1
    else:  # a CPU machine: no series, rather than a GPU that looks idle
        assert utilisation is None


def test_the_registry_is_served_over_http_and_a_taken_port_is_refused() -> None:
    metrics = WorkerMetrics(model=MODEL)
    port = free_port()
    server = serve_metrics(metrics.registry, port)
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        assert 'gpufleet_worker_state{model="synthetic",state="booting"} 1.0' in text
        with pytest.raises(ConfigError, match="in use"):
            serve_metrics(metrics.registry, port)
    finally:
        server.close()
    assert serve_metrics(metrics.registry, 0) is None  # 0: off
