"""The fleet end to end, with real processes: the controller, the local provider, workers.

The synthetic model stands in for a GPU network: 10 to 20 ms per item and a
5-second bootstrap. Every test ends with exactly one result per item.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gpufleet.autoscale.providers.base import pool_name
from gpufleet.index.fleet_records import FleetRecords
from gpufleet.models.base import canonical_spec
from gpufleet.queue import open_queue
from tests.conftest import Home, write_files
from tests.imds import ImdsServer

FAST = canonical_spec("synthetic?item_ms=10&bootstrap_s=5")
SLOW = canonical_spec("synthetic?item_ms=20&bootstrap_s=5")


@pytest.fixture
def fleet_home(home: Home) -> Iterator[Home]:
    """A home whose fleet workers (in their own sessions) are killed if a test fails."""
    yield home
    for record in (home.path / "fleet").glob("*/*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            os.kill(json.loads(record.read_text())["pid"], signal.SIGKILL)


def _controller(home: Home, inbox: Path, model: str, *args: str,
                **env: str) -> subprocess.Popen[bytes]:
    return home.spawn("controller", "--provider", "local", "--inbox", inbox.as_uri() + "/",
                      "--model", model, "--interval", "0.5", *args, **env)


def _drop(inbox: Path, name: str, doc: dict[str, Any]) -> None:
    """Write elsewhere, then rename: the inbox only ever sees a complete manifest."""
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox / f".{name}.tmp"
    tmp.write_text(json.dumps(doc))
    tmp.rename(inbox / name)


def _machines(home: Home, model: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted((home.path / "fleet" / pool_name(model)).glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(path.read_text()))
    return found


def _last_decision(home: Home, model: str) -> dict[str, Any] | None:
    index = home.index()
    try:
        decisions = FleetRecords(index).decisions(model, limit=1)
    finally:
        index.close()
    return decisions[0] if decisions else None


def _job_of(home: Home, key: str) -> str | None:
    index = home.index()
    try:
        return next((m["job_id"] for m in FleetRecords(index).manifests() if m["key"] == key),
                    None)
    finally:
        index.close()


def _job(home: Home, job_id: str) -> dict[str, Any]:
    index = home.index()
    try:
        return index.job(job_id).summary()
    finally:
        index.close()


def _worker_rows(home: Home) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from gpufleet.index.schema import workers

    index = home.index()
    try:
        with index.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(workers)).mappings()]
    finally:
        index.close()


def _assert_exactly_one_result_each(home: Home, job: str, keys: list[str]) -> None:
    lines = home.run("results", job, "-f", "jsonl").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert sorted(r["key"] for r in rows) == sorted(keys)
    assert all(r["status"] == "done" for r in rows)
    out = home.path / "buckets/results" / job
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == \
        sorted(f"{k}.json" for k in keys)


def _queue_depth(home: Home, model: str) -> tuple[int, int, int]:
    queue = open_queue(home.settings.queue, name=model)
    try:
        d = queue.depth()
        return d.queued, d.in_flight, d.dead
    finally:
        queue.close()


def test_a_manifest_in_the_inbox_grows_the_fleet_from_zero_and_back(fleet_home: Home,
                                                                    tmp_path: Path) -> None:
    home, inbox = fleet_home, tmp_path / "inbox"
    keys = write_files(tmp_path / "photos", 1000)
    # Given a controller watching an inbox, and no worker at all
    _controller(home, inbox, FAST, "--cooldown", "2")
    home.wait_for(lambda: _last_decision(home, FAST) is not None, what="the controller")
    assert _machines(home, FAST) == []
    # When a manifest lands in the inbox
    _drop(inbox, "batch.json", {"input": (tmp_path / "photos").as_uri() + "/", "items": keys,
                                "deadline_s": 120})
    # Then it becomes a job, and workers start from zero
    home.wait_for(lambda: _job_of(home, "batch.json") is not None, what="the job")
    home.wait_for(lambda: len(_machines(home, FAST)) > 0, what="a worker to start")
    # And the queue drains
    job = str(_job_of(home, "batch.json"))
    home.wait_for(lambda: _job(home, job)["state"] == "succeeded", what="the job to finish")
    # And the fleet returns to zero after the cool-down
    home.wait_for(lambda: not _machines(home, FAST) and
                  (_last_decision(home, FAST) or {}).get("desired") == 0,
                  what="the fleet to return to zero")
    _assert_exactly_one_result_each(home, job, keys)
    assert _queue_depth(home, FAST) == (0, 0, 0)
    # And the job knows what it used: busy worker-seconds and their spot price
    usage = _job(home, job)["usage"]
    assert usage["busy_s"] > 0 and usage["booting_s"] > 0 and usage["cost"] > 0
    # And `gpufleet fleet` shows the decisions with their reasons
    shown = home.json("fleet")
    assert shown["desired"] == 0 and shown["workers"] == []
    reasons = [r for d in shown["decisions"] for r in d["reasons"]]
    assert any(r.startswith("start") for r in reasons)
    assert any(r.startswith("drain idle") for r in reasons)


def test_scale_in_drains_a_busy_worker_whose_leases_are_released_not_lost(
        fleet_home: Home, tmp_path: Path) -> None:
    home, inbox = fleet_home, tmp_path / "inbox"
    # Leases would take 10 minutes to come back if lost; a worker gets 0.3 s to finish.
    env = {"GPUFLEET_VISIBILITY_TIMEOUT_S": "600", "GPUFLEET_DRAIN_GRACE_S": "0.3"}
    keys = write_files(tmp_path / "photos", 1000)
    # Given a job that needs two workers to meet its deadline, and two busy workers
    first = _controller(home, inbox, SLOW, "--max-workers", "2", **env)
    _drop(inbox, "batch.json", {"input": (tmp_path / "photos").as_uri() + "/", "items": keys,
                                "deadline_s": 20})
    home.wait_for(lambda: sum(r["state"] == "busy" for r in _worker_rows(home)) == 2,
                  what="two busy workers")
    job = str(_job_of(home, "batch.json"))
    # When the fleet is scaled in to one worker (a controller with a lower cap)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    _controller(home, inbox, SLOW, "--max-workers", "1", **env)
    home.wait_for(lambda: len(_machines(home, SLOW)) == 1, what="one worker drained")
    # Then the drained worker was busy, and handed its unfinished tasks back at once
    drained = next(d for d in FleetRecords(home.index()).decisions(SLOW, limit=50)
                   if d["drain"])["drain"]
    assert len(drained) == 1
    log = (home.path / "logs" / f"worker-{drained[0]}.log").read_text()
    assert "released" in log and "unfinished task" in log
    # And the job still finishes long before a lost lease could have come back
    home.wait_for(lambda: _job(home, job)["state"] == "succeeded", timeout_s=300,
                  what="the job to finish")
    _assert_exactly_one_result_each(home, job, keys)
    # (a released task whose items were done before the release runs again, harmlessly)
    home.wait_for(lambda: _queue_depth(home, SLOW) == (0, 0, 0), what="the queue to empty")


def test_a_controller_killed_mid_job_is_restarted_and_finds_the_same_fleet(
        fleet_home: Home, tmp_path: Path) -> None:
    home, inbox = fleet_home, tmp_path / "inbox"
    keys = write_files(tmp_path / "photos", 1000)
    # Given a controller running a job on two workers
    first = _controller(home, inbox, SLOW, "--max-workers", "3", "--cooldown", "2")
    _drop(inbox, "batch.json", {"input": (tmp_path / "photos").as_uri() + "/", "items": keys,
                                "deadline_s": 20})
    home.wait_for(lambda: _job_of(home, "batch.json") is not None, what="the job")
    job = str(_job_of(home, "batch.json"))
    home.wait_for(lambda: _job(home, job)["done"] >= 100, what="work to start")
    # When it is killed without warning, and started again
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = sorted(m["id"] for m in _machines(home, SLOW))
    desired = (_last_decision(home, SLOW) or {})["desired"]
    restarted = time.time()
    _controller(home, inbox, SLOW, "--max-workers", "3", "--cooldown", "2")
    home.wait_for(lambda: (_last_decision(home, SLOW) or {}).get("at", 0) > restarted + 1,
                  what="the new controller to decide")
    # Then it found the same workers and wants the same fleet: nothing new was launched
    after = _last_decision(home, SLOW) or {}
    assert _job(home, job)["state"] == "running"
    assert sorted(w["id"] for w in after["workers"]) == before
    assert after["desired"] == desired == len(before)
    # And the job completes, and the fleet goes back to zero
    home.wait_for(lambda: _job(home, job)["state"] == "succeeded", what="the job to finish")
    home.wait_for(lambda: not _machines(home, SLOW), what="the fleet to return to zero")
    _assert_exactly_one_result_each(home, job, keys)
    assert len({r["instance"] for r in _worker_rows(home)}) == len(before)


def test_a_spot_notice_mid_job_stops_the_worker_and_loses_nothing(home: Home,
                                                                   tmp_path: Path) -> None:
    keys = write_files(tmp_path / "photos", 600)
    manifest = tmp_path / "m.txt"
    manifest.write_text("\n".join(keys) + "\n")
    job = home.run("submit", manifest, "--input", (tmp_path / "photos").as_uri() + "/",
                   "--model", FAST).stdout.strip()
    with ImdsServer({"instance-id": "i-0spot", "instance-life-cycle": "spot"}) as imds:
        # Given a worker on a spot instance, working on a job
        worker = home.spawn("worker", "--model", FAST, GPUFLEET_IMDS_URL=imds.url,
                            GPUFLEET_NOTICE_POLL_S="0.2")
        home.wait_for(lambda: _job(home, job)["done"] >= 100, what="work to start")
        # When EC2 announces the instance goes away in 4 seconds
        when = datetime.fromtimestamp(time.time() + 4, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        imds.documents["spot/instance-action"] = json.dumps({"action": "terminate",
                                                             "time": when})
        # Then the worker stops receiving, finishes what fits, releases the rest and exits
        assert worker.wait(timeout=60) == 0
        assert ("GET", "/latest/meta-data/spot/instance-action", True) in imds.requests
    summary = _job(home, job)
    assert summary["state"] == "running" and summary["pending"] > 0
    assert _queue_depth(home, FAST)[1] == 0  # nothing left leased
    [row] = _worker_rows(home)
    assert (row["state"], row["instance"], row["capacity"]) == ("interrupted", "i-0spot", "spot")
    # And another worker finishes the job with exactly one result per item
    home.spawn("worker", "--model", FAST, "--max-idle", "2")
    home.wait_for(lambda: _job(home, job)["state"] == "succeeded", what="the job to finish")
    _assert_exactly_one_result_each(home, job, keys)


def test_a_reclaimed_spot_worker_is_replaced_on_demand_and_a_dead_one_is_replaced(
        fleet_home: Home, tmp_path: Path) -> None:
    home, inbox = fleet_home, tmp_path / "inbox"
    keys = write_files(tmp_path / "photos", 800)
    # Given a job on one spot worker
    _controller(home, inbox, FAST, "--max-workers", "1")
    _drop(inbox, "batch.json", {"input": (tmp_path / "photos").as_uri() + "/", "items": keys})
    home.wait_for(lambda: any(r["state"] == "busy" for r in _worker_rows(home)),
                  what="a busy worker")
    [spot] = _machines(home, FAST)
    assert spot["capacity"] == "spot"
    # When its spot capacity is reclaimed (the local stand-in for the EC2 notice)
    (home.path / "fleet" / pool_name(FAST) / f"{spot['id']}.notice").touch()
    # Then it is replaced by an on-demand worker
    home.wait_for(lambda: [m["capacity"] for m in _machines(home, FAST)] == ["on-demand"],
                  what="an on-demand replacement")
    reasons = [r for d in FleetRecords(home.index()).decisions(FAST, limit=20)
               for r in d["reasons"]]
    assert any("on-demand (spot refused or interrupted recently)" in r for r in reasons)
    # When that worker dies without warning
    [on_demand] = _machines(home, FAST)
    os.kill(on_demand["pid"], signal.SIGKILL)
    # Then it is noticed and replaced
    home.wait_for(lambda: [m["id"] for m in _machines(home, FAST)] not in ([], [on_demand["id"]]),
                  what="a replacement for the dead worker")
    # And the job completes with exactly one result per item
    job = str(_job_of(home, "batch.json"))
    home.wait_for(lambda: _job(home, job)["state"] == "succeeded", what="the job to finish")
    _assert_exactly_one_result_each(home, job, keys)
