"""Every process serves /metrics: real worker, controller and API processes, scraped over HTTP.

What the worker counted equals what the index says the job did; the controller's
series for a job leave when it ends; and every query of the Grafana dashboard
names a metric these processes serve.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gpufleet.worker.metrics import GPU_MEMORY, GPU_UTILIZATION
from tests.conftest import REPO, Home, write_files
from tests.servers import free_port

MODEL = "synthetic?item_ms=1"
DASHBOARD = REPO / "deploy" / "grafana" / "gpufleet.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
             "gauge": ("",), "unknown": ("",)}


@dataclass
class Scrape:
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)  # every series name served, samples or not

    def value(self, name: str, **labels: str) -> float | None:
        """The sum of the samples of this name whose labels include these."""
        found = [v for n, ls, v in self.samples
                 if n == name and all(ls.get(k) == x for k, x in labels.items())]
        return sum(found) if found else None


def scrape(port: int) -> Scrape | None:
    """One scrape, as Prometheus does it; None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    result = Scrape()
    for family in text_string_to_metric_families(text):
        result.names |= {family.name + s for s in _SUFFIXES.get(family.type, ("",))}
        for s in family.samples:
            result.samples.append((s.name, s.labels, s.value))
            result.names.add(s.name)
    return result


def value(port: int, name: str, **labels: str) -> float | None:
    found = scrape(port)
    return None if found is None else found.value(name, **labels)


def _submit(home: Home, folder: Path, keys: list[str]) -> str:
    manifest = home.path / "manifest.txt"
    manifest.write_text("\n".join(keys) + "\n")
    return home.run("submit", manifest, "--input", folder.as_uri() + "/", "--model", MODEL
                    ).stdout.strip()


def _two_free_ports() -> int:
    """A free port whose next one is free too (for a machine of two GPUs)."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_a_worker_controller_and_api_serve_what_the_job_did(home: Home, tmp_path: Path) -> None:
    # Given a job of 20 items and 3 missing ones (they fail), a controller allowed no
    # workers of its own and an API, each serving metrics on a port of its own
    keys = write_files(tmp_path / "in", 20) + [f"missing-{i}.bin" for i in range(3)]
    job = _submit(home, tmp_path / "in", keys)
    worker_port, controller_port, api_port = free_port(), free_port(), free_port()
    home.spawn("controller", "--provider", "local", "--model", MODEL, "--max-workers", "0",
               "--interval", "0.5", "--metrics-port", str(controller_port))
    home.spawn("api", "--port", str(api_port))
    # Then the controller shows the backlog, and the job predicted late (no workers)
    home.wait_for(lambda: value(controller_port, "gpufleet_controller_backlog_items") == 23,
                  what="the controller's backlog")
    before = scrape(controller_port)
    assert before is not None
    assert before.value("gpufleet_controller_job_late", model="synthetic", job=job) == 1
    assert before.value("gpufleet_controller_workers_desired") == 0

    # When a worker serving its metrics runs the job
    worker = home.spawn("worker", "--model", MODEL, "--metrics-port", str(worker_port))
    home.wait_for(lambda: home.json("status", job)["pending"] == 0, what="the job's end")
    status = home.json("status", job)
    assert (status["done"], status["failed"]) == (20, 3)

    # Then its counters are the job's counts
    def counted() -> tuple[float | None, float | None]:
        return (value(worker_port, "gpufleet_worker_items_total", outcome="done"),
                value(worker_port, "gpufleet_worker_items_total", outcome="failed"))

    home.wait_for(lambda: counted() == (status["done"], status["failed"]),
                  what="the worker's counters to reach the job's counts")
    worked = scrape(worker_port)
    assert worked is not None
    assert worked.value("gpufleet_worker_items_total", outcome="transient") == 0
    assert worked.value("gpufleet_worker_stage_items_total", stage="fetch") == 23
    assert worked.value("gpufleet_worker_tasks_ended_total", end="acked") == \
        worked.value("gpufleet_worker_tasks_started_total")
    assert (worked.value("gpufleet_worker_bootstrap_seconds") or -1) >= 0
    assert worked.value("gpufleet_worker_gpu_utilization_ratio") is None  # no GPU here
    # And the controller lets the ended job's series go
    home.wait_for(lambda: (s := scrape(controller_port)) is not None and
                  s.value("gpufleet_controller_job_late", job=job) is None,
                  what="the job's series to leave the controller's metrics")
    after = scrape(controller_port)
    assert after is not None and after.value("gpufleet_controller_backlog_items") == 0
    # And the API counts the items by status, as gauges
    home.wait_for(lambda: value(api_port, "gpufleet_items", status="done") == 20,
                  what="the API's item counts")
    api = scrape(api_port)
    assert api is not None and api.value("gpufleet_items", status="failed") == 3
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0

    # And every query of the dashboard names a metric these processes serve (the GPU's
    # only where NVML sees a GPU: named by the worker's code)
    served = before.names | after.names | worked.names | api.names | {GPU_UTILIZATION,
                                                                      GPU_MEMORY}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    for expr in exprs:
        names = set(re.findall(r"\bgpufleet_[a-z0-9_]+", expr))
        assert names, f"no gpufleet metric in {expr!r}"
        assert names <= served, f"{expr!r} names {sorted(names - served)}, not served"


def test_each_worker_of_a_machine_serves_its_own_port(home: Home, tmp_path: Path) -> None:
    # Given a job of 30 items and `gpufleet worker --gpus 0,1 --metrics-port N`
    job = _submit(home, tmp_path / "in", write_files(tmp_path / "in", 30))
    port = _two_free_ports()
    machine = home.spawn("worker", "--gpus", "0,1", "--model", MODEL, "--metrics-port",
                         str(port))
    try:
        # Then the first GPU's worker serves on N, the second's on N + 1, and together
        # they count the job's items
        home.wait_for(lambda: home.json("status", job)["pending"] == 0, what="the job's end")

        def done() -> float | None:
            counts = [value(p, "gpufleet_worker_items_total", outcome="done")
                      for p in (port, port + 1)]
            return None if None in counts else sum(c or 0 for c in counts)

        home.wait_for(lambda: done() == 30, what="both workers' counters to add up to 30")
    finally:
        machine.send_signal(signal.SIGTERM)
        assert machine.wait(timeout=60) == 0
