"""A job on Amazon SQS (moto over HTTP): init creates the queues, a worker dies, nothing is lost."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from gpufleet.queue import QueueDepth, open_queue
from tests.conformance.backends import (
    InProcessMoto,
    fresh_name,
    in_process_moto,  # noqa: F401  the fixture
)
from tests.conftest import Home, write_files

MODEL = "synthetic?item_ms=5"


def test_a_job_on_sqs_survives_a_killed_worker(home: Home, tmp_path: Path,
                                                request: pytest.FixtureRequest,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Given gpufleet pointed at an SQS queue family that `gpufleet init` creates
    moto: InProcessMoto = request.getfixturevalue("in_process_moto")
    for name, value in moto.env(str(tmp_path)).items():
        monkeypatch.setenv(name, value)
        home.env[name] = value
    home.env.update(GPUFLEET_QUEUE=f"sqs://{fresh_name('e2e-')}", GPUFLEET_MAX_RECEIVES="4",
                    GPUFLEET_VISIBILITY_TIMEOUT_S="3")
    init = home.run("init", "--create-queues")
    assert "dead-lettered after 4 receives" in init.stdout
    # And a job of 800 items with two workers on it
    keys = write_files(tmp_path / "in", 800)
    (home.path / "manifest.txt").write_text("\n".join(keys) + "\n")
    job = home.run("submit", home.path / "manifest.txt", "--input",
                   (tmp_path / "in").as_uri() + "/", "--model", MODEL).stdout.strip()
    doomed = home.spawn("worker", "--model", MODEL)
    # (no --max-idle: the survivor may find the queue empty, every task held by the doomed
    # one, for as long as the test takes to see 150 items done and kill it)
    survivor = home.spawn("worker", "--model", MODEL)
    home.wait_for(lambda: home.done(job) >= 150, what="150 items done")
    # When one worker is killed without warning, holding leases
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    # Then the other finishes the job once the dead worker's leases run out
    home.wait_for(lambda: home.json("status", job)["state"] == "succeeded",
                  what="the job to finish")
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(timeout=60) == 0
    lines = home.run("results", job, "-f", "jsonl").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert sorted(r["key"] for r in rows) == sorted(keys)
    assert {r["status"] for r in rows} == {"done"}
    out = home.path / "buckets" / "results" / job
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == \
        sorted(f"{k}.json" for k in keys)
    # And the queue and its dead-letter queue are empty
    queue = open_queue(home.env["GPUFLEET_QUEUE"], name=MODEL)
    assert queue.depth() == QueueDepth(queued=0, in_flight=0, dead=0)
    queue.close()
