"""What a worker promises whatever happens to it (issue 11): an item that kills it fails
alone and its job ends; one result that cannot be written fails that item alone; a
frozen worker that thaws writes nothing; a drain keeps to its grace period."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from gpufleet.domain import ItemResult, ItemStatus
from gpufleet.models.base import canonical_spec
from gpufleet.queue import open_queue
from tests.conformance.backends import (
    InProcessMoto,
    fresh_name,
    in_process_moto,  # noqa: F401  the fixture
)
from tests.conftest import Home, write_files
from tests.servers import RedisServer

POISON = "tests.e2e.plugins:PoisonTagger"


def _submit(home: Home, folder: Path, keys: list[str], model: str, **env: str) -> str:
    manifest = home.path / f"manifest-{len(list(home.path.glob('manifest-*')))}.txt"
    manifest.write_text("\n".join(keys) + "\n")
    return home.run("submit", manifest, "--input", folder.as_uri() + "/", "--model", model,
                    **env).stdout.strip()


def _status(home: Home, job: str) -> dict[str, object]:
    result: dict[str, object] = home.json("status", job)
    return result


def _rows(home: Home, job: str) -> dict[str, dict[str, object]]:
    lines = home.run("results", job, "-f", "jsonl").stdout.splitlines()
    return {r["key"]: r for r in map(json.loads, lines)}


def _finished(home: Home, job: str) -> dict[str, tuple[object, object]]:
    """Each item's recorded worker and finishing time, as the index has them."""
    index = home.index()
    try:
        return {r.key: (r.worker, r.finished_at) for r in index.iter_results(job)}
    finally:
        index.close()


@pytest.fixture(params=["embedded", "redis+postgres", "sqs"])
def backend(request: pytest.FixtureRequest, home: Home, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> str:
    """The queue and index behind `home`: the receive count must hold on every one."""
    if request.param == "redis+postgres":
        redis: RedisServer = request.getfixturevalue("redis_server")
        home.env.update(GPUFLEET_QUEUE=f"{redis.url}?namespace={fresh_name('promises-')}",
                        GPUFLEET_DB=request.getfixturevalue("postgres_url"))
        home.run("init")
    elif request.param == "sqs":
        moto: InProcessMoto = request.getfixturevalue("in_process_moto")
        for name, value in moto.env(str(tmp_path)).items():
            monkeypatch.setenv(name, value)
            home.env[name] = value
        home.env.update(GPUFLEET_QUEUE=f"sqs://{fresh_name('promises-')}",
                        GPUFLEET_MAX_RECEIVES="3")
        home.run("init", "--create-queues")  # SQS counts receives itself: maxReceiveCount
    return str(request.param)


def test_an_item_that_kills_every_worker_fails_alone_and_the_job_ends(
        home: Home, tmp_path: Path, backend: str) -> None:
    # Given a 12-item task whose sixth object kills any worker that decodes it
    keys = write_files(tmp_path / "in", 12)
    (tmp_path / "in" / keys[5]).write_bytes(b"POISON")
    env = {"GPUFLEET_MAX_RECEIVES": "3", "GPUFLEET_VISIBILITY_TIMEOUT_S": "1",
           "GPUFLEET_CHUNK_SIZE": "12"}
    job = _submit(home, tmp_path / "in", keys, POISON, **env)
    # When workers keep being started as they die, as a fleet would start them
    for _ in range(12):
        if _status(home, job)["state"] != "queued" and not _status(home, job)["pending"]:
            break
        home.spawn("worker", "--model", POISON, "--max-idle", "3", **env).wait(timeout=120)
    # Then the job ends: the culprit failed with the reason, every other item tagged
    status = _status(home, job)
    assert (status["state"], status["done"], status["failed"]) == ("partial", 11, 1), status
    rows = _rows(home, job)
    assert "the worker died or stalled on this item" in str(rows[keys[5]]["error"])
    assert all(rows[k]["status"] == "done" for k in keys if k != keys[5])


def test_a_result_that_cannot_be_written_fails_that_item_alone(
        home: Home, tmp_path: Path) -> None:
    # Given one job whose keys p.bin and p.bin.json/q.bin cannot both have a result file
    # (p.bin.json is a file, or a folder), among good items, and another tenant's clean job
    folder = tmp_path / "in"
    good = write_files(folder, 30)
    (folder / "p.bin").write_bytes(b"p")
    (folder / "p.bin.json").mkdir()
    (folder / "p.bin.json" / "q.bin").write_bytes(b"q")
    mixed = _submit(home, folder, [*good, "p.bin", "p.bin.json/q.bin"], "synthetic?item_ms=0")
    other_keys = write_files(tmp_path / "other", 100)
    other = _submit(home, tmp_path / "other", other_keys, "synthetic?item_ms=0")
    # When one worker runs both
    home.spawn("worker", "--model", "synthetic?item_ms=0", "--max-idle", "2").wait(timeout=120)
    # Then only the item that cannot be written failed, with its own reason
    status = _status(home, mixed)
    assert (status["done"], status["failed"]) == (31, 1), status
    failed = [r for r in _rows(home, mixed).values() if r["status"] == "failed"]
    assert len(failed) == 1 and "cannot write the result" in str(failed[0]["error"])
    # And the other job saw nothing of it
    assert _status(home, other)["state"] == "succeeded"


def test_a_worker_frozen_past_its_lease_writes_nothing_when_it_thaws(
        home: Home, tmp_path: Path) -> None:
    # Given a slow job and a worker holding leases of 2 s
    keys = write_files(tmp_path / "in", 120)
    env = {"GPUFLEET_VISIBILITY_TIMEOUT_S": "2", "GPUFLEET_CHUNK_SIZE": "8"}
    model = "synthetic?item_ms=40"
    job = _submit(home, tmp_path / "in", keys, model, **env)
    stale = home.spawn("worker", "--model", model, "--max-idle", "30", **env)
    home.wait_for(lambda: home.done(job) >= 16, what="work to start")
    # When it is frozen (SIGSTOP: a GC pause, a stalled VM) and another worker finishes
    stale.send_signal(signal.SIGSTOP)
    frozen_at = time.time()
    home.spawn("worker", "--model", model, "--max-idle", "2", **env).wait(timeout=120)
    assert _status(home, job)["state"] == "succeeded"
    finished = _finished(home, job)
    out = home.path / "buckets" / "results" / job
    objects = {p: p.read_bytes() for p in out.rglob("*.json")}
    # And the frozen one thaws
    stale.send_signal(signal.SIGCONT)
    home.wait_for(lambda: "lost the lease" in home.logs(), what="the thawed worker to notice")
    stale.send_signal(signal.SIGTERM)
    assert stale.wait(timeout=60) == 0
    # Then it wrote nothing over the finished job: rows and objects are as they were
    assert _finished(home, job) == finished
    assert {p: p.read_bytes() for p in out.rglob("*.json")} == objects
    assert frozen_at < time.time()


def test_a_drain_hands_back_what_does_not_fit_in_the_grace_period(
        home: Home, tmp_path: Path) -> None:
    # Given a busy worker with far more work in hand than fits in a 1 s grace period
    keys = write_files(tmp_path / "in", 400)
    model = canonical_spec("synthetic?item_ms=100&batch_size=4")  # the queue's name
    env = {"GPUFLEET_DRAIN_GRACE_S": "1", "GPUFLEET_VISIBILITY_TIMEOUT_S": "600"}
    job = _submit(home, tmp_path / "in", keys, model, **env)
    worker = home.spawn("worker", "--model", model, **env)
    home.wait_for(lambda: int(_status(home, job)["done"]) > 0, what="work to start")  # type: ignore[call-overload]
    # When it is told to drain
    worker.send_signal(signal.SIGTERM)
    # Then it exits cleanly, having handed its unfinished tasks back at once (the leases
    # would otherwise hold them for 10 minutes)
    assert worker.wait(timeout=60) == 0
    assert "released" in home.logs() and "unfinished task" in home.logs()
    queue = open_queue(home.settings.queue, name=model)
    try:
        depth = queue.depth()
    finally:
        queue.close()
    assert depth.in_flight == 0 and depth.queued > 0


def test_a_task_whose_items_were_all_recorded_is_not_done_again(
        home: Home, tmp_path: Path) -> None:
    # Given a task whose every item an earlier delivery recorded, though its ack was lost (a
    # queue restarted from its last write, a worker killed between the two)
    model = "synthetic?item_ms=0"
    keys = write_files(tmp_path / "in", 6)
    job = _submit(home, tmp_path / "in", keys, model, GPUFLEET_CHUNK_SIZE="6")
    queue = open_queue(home.settings.queue, name=canonical_spec(model))
    assert len(queue.receive(1, visibility_timeout_s=1)) == 1  # the earlier delivery
    index = home.index()
    index.record([ItemResult(job=job, key=k, status=ItemStatus.DONE, worker="earlier",
                             finished_at=1.0) for k in keys])
    index.close()
    # When it is delivered again, to a worker
    home.spawn("worker", "--model", model, "--max-idle", "3").wait(timeout=120)
    # Then it is acked without doing its items again: rows untouched, no object rewritten
    assert {worker for worker, _ in _finished(home, job).values()} == {"earlier"}
    assert not (home.path / "buckets" / "results" / job).exists()
    assert (queue.depth().queued, queue.depth().in_flight) == (0, 0)
    assert "came back with every item recorded" in " ".join(home.logs().split())
    queue.close()
