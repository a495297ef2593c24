"""`gpufleet worker --gpus`: one worker per GPU, one machine of the fleet (issue 10).

No GPU runs here: each worker is given its GPU the way CUDA reads it
(CUDA_VISIBLE_DEVICES), and a plugin model tags items with what it was given,
so what is tested for real is the machine's part: one worker per GPU, their
shared identity and price, drain, a crashed worker started again, nothing
lost or done twice.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

from gpufleet.models.base import canonical_spec
from tests.conftest import Home, write_files

DEVICE = "tests.e2e.plugins:DeviceTagger"
LOST_GPU_1 = f"{DEVICE}?item_ms=5&lost=1"  # GPU 1's device lost: every batch there fails
MACHINE = {"GPUFLEET_INSTANCE": "machine-1", "GPUFLEET_CAPACITY": "spot",
           "GPUFLEET_CHUNK_SIZE": "10"}
QUICK_RETRIES = {**MACHINE, "GPUFLEET_BACKOFF_BASE_S": "0.2"}


def _submit(home: Home, folder: Path, keys: list[str], model: str) -> str:
    manifest = home.path / "manifest.txt"
    manifest.write_text("\n".join(keys) + "\n")
    return home.run("submit", manifest, "--input", folder.as_uri() + "/", "--model", model,
                    **MACHINE).stdout.strip()


def _results(home: Home, job: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in
            home.run("results", job, "-f", "jsonl").stdout.splitlines()]


def _all_done_by_gpu_0(home: Home, job: str, keys: list[str]) -> None:
    results = _results(home, job)
    assert sorted(r["key"] for r in results) == sorted(keys)
    assert {(r["status"], r["tags"][0]["label"]) for r in results} == {("done", "gpu-0")}  # type: ignore[index]


def _rows(home: Home, model: str) -> list[dict[str, object]]:
    index = home.index()
    try:
        with index.transaction() as conn:
            from sqlalchemy import select

            from gpufleet.index.schema import workers
            return [dict(r) for r in conn.execute(
                select(workers).where(workers.c.model == model)).mappings()]
    finally:
        index.close()


def test_one_worker_per_gpu_shares_the_machine_and_its_price(
        home: Home, tmp_path: Path) -> None:
    # Given a 300-item job, and a machine with GPUs 0 and 1
    model = f"{DEVICE}?item_ms=5"
    keys = write_files(tmp_path / "in", 300)
    job = _submit(home, tmp_path / "in", keys, model)
    # When `gpufleet worker --gpus 0,1` runs until there is no work
    machine = home.spawn("worker", "--gpus", "0,1", "--model", model, "--max-idle", "2",
                         **MACHINE)
    assert machine.wait(timeout=180) == 0, home.logs()
    # Then every item was done once, each by the worker of GPU 0 or GPU 1
    results = _results(home, job)
    assert sorted(r["key"] for r in results) == sorted(keys)
    assert all(r["status"] == "done" for r in results)
    devices = Counter(r["tags"][0]["label"] for r in results)  # type: ignore[index]
    assert set(devices) <= {"gpu-0", "gpu-1"}, devices
    # And the machine is one instance of two workers, each carrying half its spot price
    rows = _rows(home, canonical_spec(model))
    assert len(rows) == 2
    assert {(r["instance"], r["capacity"], r["gpus"], r["state"]) for r in rows} == {
        ("machine-1", "spot", 2, "stopped")}
    price = home.settings.fleet.spot_price_per_h
    assert [r["price_per_h"] for r in rows] == [price / 2, price / 2]
    assert sum(int(r["items"]) for r in rows) == 300  # type: ignore[call-overload]


def test_a_machine_drains_every_gpu_on_sigterm_and_loses_nothing(
        home: Home, tmp_path: Path) -> None:
    # Given a slow job under way on a machine of two GPUs
    model = f"{DEVICE}?item_ms=40"
    keys = write_files(tmp_path / "in", 200)
    job = _submit(home, tmp_path / "in", keys, model)
    machine = home.spawn("worker", "--gpus", "0,1", "--model", model, **MACHINE)
    spec = canonical_spec(model)
    home.wait_for(lambda: sum(r["state"] == "busy" for r in _rows(home, spec)) == 2,
                  what="both GPUs busy")
    # When the machine is told to go (an Auto Scaling scale-in, a spot notice)
    machine.send_signal(signal.SIGTERM)
    # Then it exits once both workers drained, each row saying so
    assert machine.wait(timeout=60) == 0, home.logs()
    assert [r["state"] for r in _rows(home, spec)] == ["stopped", "stopped"]
    # And what they handed back is done by the next worker: every item once
    home.spawn("worker", "--model", model, "--max-idle", "2").wait(timeout=180)
    results = _results(home, job)
    assert sorted(r["key"] for r in results) == sorted(keys)
    assert all(r["status"] == "done" for r in results)


def test_a_gpu_whose_worker_crashed_gets_another(home: Home, tmp_path: Path) -> None:
    # Given a machine of two GPUs at work, short leases so a crash's tasks come back soon
    model = f"{DEVICE}?item_ms=40"
    env = {**MACHINE, "GPUFLEET_VISIBILITY_TIMEOUT_S": "2"}
    keys = write_files(tmp_path / "in", 150)
    manifest = home.path / "manifest.txt"
    manifest.write_text("\n".join(keys) + "\n")
    job = home.run("submit", manifest, "--input", (tmp_path / "in").as_uri() + "/",
                   "--model", model, **env).stdout.strip()
    machine = home.spawn("worker", "--gpus", "0,1", "--model", model, "--max-idle", "3",
                         **env)
    spec = canonical_spec(model)
    home.wait_for(lambda: any(r["state"] == "busy" for r in _rows(home, spec)),
                  what="a GPU busy")
    # When one GPU's worker is killed outright
    victim = next(r for r in _rows(home, spec) if r["state"] == "busy")
    os.kill(int(victim["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
    # Then the machine starts another for that GPU, and the job ends with every item done
    assert machine.wait(timeout=240) == 0, home.logs()
    assert "starting another" in home.logs()
    assert len(_rows(home, spec)) == 3
    results = _results(home, job)
    assert sorted(r["key"] for r in results) == sorted(keys)
    assert all(r["status"] == "done" for r in results)


def test_a_worker_whose_device_is_lost_hands_its_tasks_back_and_exits(
        home: Home, tmp_path: Path) -> None:
    # Given a job, and a worker on GPU 1, whose device is lost: every batch fails, as
    # after a CUDA fault
    keys = write_files(tmp_path / "in", 100)
    job = _submit(home, tmp_path / "in", keys, LOST_GPU_1)
    # When it runs
    lost = home.run("worker", "--model", LOST_GPU_1, "--max-idle", "30", check=False,
                    timeout=60, CUDA_VISIBLE_DEVICES="1", **QUICK_RETRIES)
    # Then it stops at its first batch with an error exit, saying why in one line
    assert lost.returncode == 1, lost.stderr
    assert " ".join(lost.stderr.split()).endswith(
        "error: the GPU (cuda:0, GPU 1) can run nothing more: CUDA error: an illegal memory "
        "access was encountered (the worker handed its tasks back and stopped)"), lost.stderr
    # And no item failed: what it had taken waits on the queue again
    index = home.index()
    try:
        counts = index.job(job).counts
    finally:
        index.close()
    assert (counts.done, counts.failed, counts.total) == (0, 0, 100)
    # When a worker on a sound GPU runs
    home.run("worker", "--model", LOST_GPU_1, "--max-idle", "3", CUDA_VISIBLE_DEVICES="0",
             **QUICK_RETRIES)
    # Then it does every item, once
    _all_done_by_gpu_0(home, job, keys)


def test_a_machine_starts_another_worker_for_a_lost_gpu_and_loses_nothing(
        home: Home, tmp_path: Path) -> None:
    # Given a job, and a machine of two GPUs, GPU 1's device lost
    keys = write_files(tmp_path / "in", 300)
    job = _submit(home, tmp_path / "in", keys, LOST_GPU_1)
    # When the machine runs until there is no work
    machine = home.spawn("worker", "--gpus", "0,1", "--model", LOST_GPU_1, "--max-idle", "3",
                         **QUICK_RETRIES)
    machine.wait(timeout=240)
    # Then GPU 1's worker stopped, saying why, and another was started for it
    logs = "\n".join(p.read_text() for p in sorted(home.path.glob("proc-*.log")))
    assert "handed its tasks back and stopped" in logs, logs
    assert "GPU 1: its worker exited with code 1; starting another" in logs, logs
    # And GPU 0's worker did every item, once: none failed, none was dead-lettered
    _all_done_by_gpu_0(home, job, keys)


def test_no_gpu_for_all_is_one_line(home: Home) -> None:
    result = home.run("worker", "--gpus", "all", "--model", "synthetic", check=False,
                      CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 1
    assert " ".join(result.stderr.split()) == (  # one message, however the terminal wraps it
        "error: --gpus all: no GPU found (NVML sees none: is nvidia-ml-py installed and the "
        "driver loaded?); name them, e.g. --gpus 0,1")
