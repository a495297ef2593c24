"""The embedded flow end to end, with real worker processes: crash, drain, retry, DLQ."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from gpufleet.queue import open_queue
from tests.conftest import Home, write_files

SLOW = "synthetic?item_ms=4"


def _submit(home: Home, keys_dir: Path, keys: list[str], model: str) -> str:
    manifest = home.path / "manifest.txt"
    manifest.write_text("\n".join(keys) + "\n")
    return home.run("submit", manifest, "--input", keys_dir.as_uri() + "/",
                    "--model", model).stdout.strip()


def _status(home: Home, job: str) -> dict[str, object]:
    result: dict[str, object] = home.json("status", job)
    return result


def _results(home: Home, job: str) -> list[dict[str, object]]:
    lines = home.run("results", job, "-f", "jsonl").stdout.splitlines()
    return [json.loads(line) for line in lines]


def _assert_exactly_one_result_each(home: Home, job: str, keys: list[str]) -> None:
    rows = _results(home, job)
    assert sorted(r["key"] for r in rows) == sorted(keys)
    assert all(r["status"] == "done" and len(r["tags"]) == 5 for r in rows)
    objects = sorted(p.relative_to(home.path / "buckets/results" / job).as_posix()
                     for p in (home.path / "buckets/results" / job).rglob("*.json"))
    assert objects == sorted(f"{k}.json" for k in keys)


def test_submit_wait_tags_a_folder_and_writes_one_result_per_item(home: Home,
                                                                  tmp_path: Path) -> None:
    # Given a folder of 300 objects
    keys = write_files(tmp_path / "photos", 300)
    # When it is submitted with --wait and no worker running
    summary = home.json("submit", tmp_path / "photos", "--model", "synthetic?item_ms=1",
                        "--wait", "--workers", "2")
    # Then the job succeeded, every item has one result row and one result object
    assert summary["state"] == "succeeded"
    assert (summary["total"], summary["done"], summary["failed"]) == (300, 300, 0)
    _assert_exactly_one_result_each(home, summary["job"], keys)
    # And the workers it started are gone
    assert home.index().live_workers() == []


def test_sigkill_mid_job_redelivers_and_loses_nothing(home: Home, tmp_path: Path) -> None:
    # Given a job of 1500 items and a worker with a short lease
    keys = write_files(tmp_path / "in", 1500)
    job = _submit(home, tmp_path / "in", keys, SLOW)
    env = {"GPUFLEET_VISIBILITY_TIMEOUT_S": "2"}
    first = home.spawn("worker", "--model", SLOW, **env)
    home.wait_for(lambda: home.done(job) >= 300, what="300 items done")
    # When the worker is killed without warning mid-job, and another starts
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert _status(home, job)["state"] == "running"
    second = home.spawn("worker", "--model", SLOW, "--max-idle", "3", **env)
    home.wait_for(lambda: _status(home, job)["state"] == "succeeded", what="job to finish")
    assert second.wait(timeout=60) == 0
    # Then every item ends with exactly one result row and one result object
    _assert_exactly_one_result_each(home, job, keys)
    # And the queue is empty: nothing in flight, nothing dead
    queue = open_queue(home.settings.queue, name=SLOW)
    depth = queue.depth()
    queue.close()
    assert (depth.queued, depth.in_flight, depth.dead) == (0, 0, 0)


def test_sigterm_finishes_in_flight_work_then_releases_the_rest(home: Home,
                                                                tmp_path: Path) -> None:
    # Given a slow job (each task takes about 1.6 s) being worked on
    model = "synthetic?item_ms=50"
    keys = write_files(tmp_path / "in", 320)
    job = _submit(home, tmp_path / "in", keys, model)
    worker = home.spawn("worker", "--model", model, GPUFLEET_DRAIN_GRACE_S="0.5")
    home.wait_for(lambda: home.done(job) >= 40, what="work to start")
    # When it is told to stop, with a grace period shorter than its in-flight work
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    # Then its leases were handed back at once, not left to expire
    queue = open_queue(home.settings.queue, name=model)
    depth = queue.depth()
    queue.close()
    assert depth.in_flight == 0
    assert depth.queued > 0
    # And another worker finishes the job with exactly one result each
    home.spawn("worker", "--model", "synthetic?item_ms=50", "--max-idle", "2")
    home.wait_for(lambda: _status(home, job)["state"] == "succeeded", what="job to finish")
    _assert_exactly_one_result_each(home, job, keys)


def test_a_failing_model_dead_letters_the_task_and_redrive_brings_it_back(
        home: Home, tmp_path: Path) -> None:
    # Given a model whose inference fails until it is healed, and two receives allowed
    heal = tmp_path / "healed"
    model = f"tests.e2e.plugins:FlakyTagger?heal_file={heal}"
    keys = write_files(tmp_path / "in", 10)
    env = {"GPUFLEET_MAX_RECEIVES": "2", "GPUFLEET_BACKOFF_BASE_S": "0.1"}
    job = _submit(home, tmp_path / "in", keys, model)
    # When a worker runs it
    first = home.spawn("worker", "--model", model, "--max-idle", "2", **env)
    home.wait_for(lambda: _status(home, job)["state"] == "failed", what="job to fail")
    first.wait(timeout=60)  # gone idle: nothing takes the redriven task before we look
    # Then the task is dead-lettered with its last error, and its items failed with the reason
    letters = home.json("dlq", "list")
    assert len(letters) == 1
    assert letters[0]["job"] == job and letters[0]["receives"] == 2
    assert "GPU fell off the bus" in letters[0]["error"]
    rows = _results(home, job)
    assert {r["status"] for r in rows} == {"failed"}
    assert all("dead-lettered" in r["error"] for r in rows)
    # When the model is healed and the task redriven
    heal.touch()
    assert "redrove 1 task" in home.run("dlq", "redrive").stdout
    # Then its items are pending again: the job is running again, not failed
    status = _status(home, job)
    assert (status["state"], status["pending"], status["failed"]) == ("running", 10, 0)
    home.spawn("worker", "--model", model, "--max-idle", "2", **env)
    # Then the job completes and nothing is left dead
    home.wait_for(lambda: _status(home, job)["state"] == "succeeded", what="job to succeed")
    assert home.json("dlq", "list") == []


def test_a_hostile_manifest_is_refused_and_nothing_is_enqueued(home: Home) -> None:
    # Given a manifest with one hostile key among good ones
    manifest = home.path / "m.txt"
    manifest.write_text("a.jpg\nb.jpg\n../../etc/passwd\n")
    # When it is submitted
    result = home.run("submit", manifest, "--model", "synthetic", check=False)
    # Then it is refused with one clear line naming the line and the reason
    assert result.returncode == 1
    assert "line 3" in result.stderr and "'..' segment" in result.stderr
    assert "Traceback" not in result.stderr
    # And there is no job and no task
    assert home.json("status") == []
    queue = open_queue(home.settings.queue, name="synthetic")
    assert queue.depth().queued == 0
    queue.close()


def test_unknown_settings_and_models_get_one_line_errors(home: Home) -> None:
    result = home.run("status", check=False, GPUFLEET_VISIBLITY_TIMEOUT_S="5")
    assert result.returncode == 1
    assert "unknown setting GPUFLEET_VISIBLITY_TIMEOUT_S" in result.stderr
    manifest = home.path / "m.txt"
    manifest.write_text("a.jpg\n")
    result = home.run("submit", manifest, "--model", "resnet-9000", check=False)
    assert result.returncode == 1 and "unknown model 'resnet-9000'" in result.stderr
    result = home.run("status", "no-such-job", check=False)
    assert result.returncode == 1 and "no job 'no-such-job'" in result.stderr


def test_heartbeats_keep_a_task_that_outlasts_its_lease(home: Home, tmp_path: Path) -> None:
    # Given tasks that take about 1.6 s each and a lease of 1 s
    model = "synthetic?item_ms=50"
    keys = write_files(tmp_path / "in", 64)
    job = _submit(home, tmp_path / "in", keys, model)
    # When one worker processes them
    home.spawn("worker", "--model", model, "--max-idle", "1",
               GPUFLEET_VISIBILITY_TIMEOUT_S="1")
    home.wait_for(lambda: _status(home, job)["state"] == "succeeded", what="job to finish")
    # Then no task was redelivered: every item was processed exactly once
    index = home.index()
    assert {r.attempts for r in index.iter_results(job)} == {1}
    index.close()
