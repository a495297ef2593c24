"""Machines with several GPUs: which GPUs `--gpus` names, and how the controller sees a
machine whose pipelines (one per GPU) each keep a row."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gpufleet.autoscale.controller import Controller, Estimates
from gpufleet.autoscale.machines import QUIET_S, machine_row
from gpufleet.autoscale.policy import PolicyConfig
from gpufleet.autoscale.providers.base import pool_name
from gpufleet.autoscale.providers.local import LocalProvider
from gpufleet.config import Settings
from gpufleet.domain import WorkerState
from gpufleet.errors import ConfigError
from gpufleet.index import Index
from gpufleet.models.base import canonical_spec
from gpufleet.worker.machine import resolve_gpus

MODEL = canonical_spec("synthetic?item_ms=10")


# -- which GPUs ----------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "visible", "count", "gpus"), [
    ("all", None, 4, ["0", "1", "2", "3"]),
    ("all", "", 2, ["0", "1"]),  # an empty CUDA_VISIBLE_DEVICES is as good as unset here
    ("all", "2,3", 8, ["2", "3"]),  # what the machine was given is what it shares out
    ("all", "GPU-5d2e-11aa,GPU-77b0-2c3d", 8, ["GPU-5d2e-11aa", "GPU-77b0-2c3d"]),
    ("0,2", None, 0, ["0", "2"]),
    (" 1 ", "0", 0, ["1"]),
    ("MIG-4f1a-99", None, 0, ["MIG-4f1a-99"]),
])
def test_gpus_are_all_of_them_or_those_named(spec: str, visible: str | None, count: int,
                                             gpus: list[str]) -> None:
    assert resolve_gpus(spec, visible=visible, count=count) == gpus


@pytest.mark.parametrize(("spec", "message"), [
    ("all", "no GPU found"),
    ("", "expected all"),
    ("0,,1", "expected all"),
    ("two", "expected all"),
    ("0;rm -rf /", "expected all"),
    ("1,1", "named twice"),
])
def test_bad_gpu_lists_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_gpus(spec, visible=None, count=0)


# -- a machine's rows, seen as one ------------------------------------------------------------


def _row(state: str, *, seen: float = 1000.0, started: float = 900.0,
         since: float | None = None, util: float | None = None) -> dict[str, Any]:
    return {"id": f"w-{state}-{seen}-{started}", "state": state, "last_seen": seen,
            "started_at": started, "state_since": since, "capacity": "spot",
            "gpu_util_pct": util, "gpu_memory_mb": None if util is None else 1024.0}


@pytest.mark.parametrize(("states", "machine"), [
    (["ready", "busy"], "busy"),  # draining it would cut the busy GPU's work short
    (["ready", "booting"], "booting"),  # not at its capacity yet
    (["busy", "draining"], "draining"),  # on its way out: the policy replaces it
    (["ready", "ready"], "ready"),
    (["stopped", "busy"], "busy"),  # a crashed pipeline's last word does not count
    (["stopped", "stopped"], "stopped"),  # all gone: as the last one said
])
def test_a_machine_is_as_busy_as_its_busiest_gpu(states: list[str], machine: str) -> None:
    rows = [_row(s, seen=1000.0 + i) for i, s in enumerate(states)]
    assert machine_row(rows, now=1001.0)["state"] == machine


def test_a_pipeline_gone_quiet_no_longer_counts() -> None:
    # Given one pipeline killed while busy (its row stopped changing) and one ready
    rows = [_row("busy", seen=1000.0), _row("ready", seen=1000.0 + QUIET_S + 5, since=950.0)]
    # Then the machine is ready, with one live pipeline
    merged = machine_row(rows, now=1000.0 + QUIET_S + 5)
    assert (merged["state"], merged["pipelines"]) == ("ready", 1)


def test_a_machine_is_idle_since_its_last_gpu_went_idle_and_reports_all_of_its_gpus() -> None:
    rows = [_row("ready", since=950.0, util=0.0, started=800.0),
            _row("ready", since=990.0, util=10.0, started=810.0)]
    merged = machine_row(rows, now=1000.0)
    assert (merged["state_since"], merged["started_at"]) == (990.0, 800.0)
    assert (merged["gpu_util_pct"], merged["gpu_memory_mb"]) == (5.0, 2048.0)


# -- the controller plans with machines ----------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"GPUFLEET_HOME": str(tmp_path / "home")})


def test_the_controller_sees_one_busy_machine_of_two_gpus(settings: Settings) -> None:
    # Given one local machine (a live process in the registry) whose two GPU pipelines
    # report: one busy, one ready, each at 20 ms per item over its own work
    registry = settings.home / "fleet" / pool_name(MODEL)
    registry.mkdir(parents=True)
    machine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    index = Index(settings.db)
    try:
        (registry / "local-m1.json").write_text(json.dumps({
            "id": "local-m1", "pid": machine.pid, "capacity": "spot",
            "launched_at": time.time() - 60}))
        for gpu, state in (("0", "busy"), ("1", "ready")):
            index.worker_seen(f"w{gpu}", host="h", pid=1, model=MODEL, state=state,
                              bootstrap_s=5.0, extra={
                                  "instance": "local-m1", "capacity": "spot", "gpus": 2,
                                  "busy_s": 2.0, "idle_s": 0.0, "items": 100,
                                  "gpu_util_pct": 90.0 if state == "busy" else 0.0})
        ctl = Controller(settings, index, LocalProvider.for_pool(settings, model=MODEL),
                         model=MODEL, config=PolicyConfig(), estimates=Estimates())
        # When it looks
        view, snapshot = ctl.view(ctl.provider.machines(), time.time())
        ctl.close()
        # Then it sees one busy machine of two pipelines, serving an item every 10 ms
        assert [w.state for w in view.workers] == [WorkerState.BUSY]
        assert (snapshot[0]["pipelines"], snapshot[0]["gpu_util_pct"]) == (2, 45.0)
        assert view.item_s == pytest.approx(0.010)
    finally:
        index.close()
        machine.kill()
        machine.wait()


def test_until_workers_report_the_controller_trusts_its_gpus_per_machine(
        settings: Settings) -> None:
    # Given a controller told machines have 4 GPUs, for a model at 40 ms per item per GPU
    index = Index(settings.db)
    ctl = Controller(settings, index, LocalProvider.for_pool(settings, model=MODEL),
                     model=MODEL, config=PolicyConfig(),
                     estimates=Estimates.for_model("synthetic?item_ms=40", gpus=4))
    # Then it plans with a machine serving an item every 10 ms
    view, _ = ctl.view([], time.time())
    ctl.close()
    index.close()
    assert view.item_s == pytest.approx(0.010)
