"""How jobs end under the real CLI: cancel, interrupted submissions, the sweeper, Ctrl-C."""

from __future__ import annotations

import signal
from pathlib import Path

from gpufleet.domain import ItemResult, ItemStatus, Task
from gpufleet.queue import open_queue
from tests.conftest import Home, write_files

MODEL = "synthetic?item_ms=1"


def _submit(home: Home, folder: Path, keys: list[str], *args: str) -> str:
    manifest = home.path / "manifest.txt"
    manifest.write_text("\n".join(keys) + "\n")
    return home.run("submit", manifest, "--input", folder.as_uri() + "/", "--model", MODEL,
                    *args).stdout.strip()


def test_a_job_is_running_once_a_worker_takes_a_task_before_any_item_ends(
        home: Home, tmp_path: Path) -> None:
    # Given a job of slow items (each takes 30 s), queued
    model = "synthetic?item_ms=30000"
    keys = write_files(tmp_path / "in", 2)
    (home.path / "m.txt").write_text("\n".join(keys) + "\n")
    job = home.run("submit", home.path / "m.txt", "--input", (tmp_path / "in").as_uri() + "/",
                   "--model", model).stdout.strip()
    assert home.json("status", job)["state"] == "queued"
    # When a worker takes its task: nothing is done or failed yet
    home.spawn("worker", "--model", model)
    # Then the job says running, with every item still pending
    home.wait_for(lambda: home.json("status", job)["state"] == "running",
                  what="the job running")
    status = home.json("status", job)
    assert (status["done"], status["failed"], status["pending"]) == (0, 0, 2)
    assert status["started_at"] is not None


def test_cancel_ends_every_pending_item_and_a_finished_job_refuses(home: Home,
                                                                  tmp_path: Path) -> None:
    # Given a queued job of 70 items and no worker
    keys = write_files(tmp_path / "in", 70)
    job = _submit(home, tmp_path / "in", keys)
    # When it is cancelled
    printed = home.run("cancel", job).stdout
    # Then every item is cancelled, the counts add up, and the job is cancelled
    assert printed.split() == [job, "cancelled:", "0", "done,", "0", "failed,", "70",
                               "cancelled", "of", "70"]
    index = home.index()
    assert {r.status for r in index.iter_results(job)} == {"cancelled"}
    # And cancelling it again is harmless
    summary = home.json("cancel", job)
    assert (summary["state"], summary["cancelled"], summary["pending"]) == ("cancelled", 70, 0)
    # And a job that has ended cannot be cancelled: one line, exit 1
    index.create_job("done-job", model=MODEL, input="file:///in/", output="file:///out/",
                     keys=["a"])
    index.record([ItemResult(job="done-job", key="a", status=ItemStatus.DONE)])
    index.close()
    refused = home.run("cancel", "done-job", check=False)
    assert refused.returncode == 1
    assert "is finished (succeeded): nothing to cancel" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_killed_submission_is_finished_by_the_next_submit(home: Home, tmp_path: Path) -> None:
    # Given `gpufleet submit` of 3,000 keys, killed (SIGKILL) as soon as its job exists
    keys = [f"photo-{i:05d}.jpg" for i in range(3000)]
    manifest = tmp_path / "big.txt"
    manifest.write_text("\n".join(keys) + "\n")
    submitter = home.spawn("submit", str(manifest), "--model", MODEL,
                           GPUFLEET_CHUNK_SIZE="2")
    index = home.index()
    home.wait_for(lambda: bool(index.jobs()) or submitter.poll() is not None,
                  what="the job row")
    submitter.kill()
    submitter.wait()
    [job] = [j.id for j in index.jobs()]
    # When the next submit runs (another job)
    other = _submit(home, tmp_path, ["other.jpg"])
    # Then every key of the killed job is on the queue, and nothing else of it is pending
    queue = open_queue(home.settings.queue, name=MODEL)
    seen: set[str] = set()
    while leases := queue.receive(100, visibility_timeout_s=60):
        for lease in leases:
            task = Task.decode(lease.body)
            if task.job == job:
                seen.update(task.keys)
            queue.ack(lease)
    queue.close()
    assert seen == set(keys)
    assert {j.id for j in index.jobs()} == {job, other}
    index.close()


def test_a_worker_starting_repairs_a_job_whose_tasks_were_lost(home: Home,
                                                              tmp_path: Path) -> None:
    # Given a job of 20 items whose tasks were lost from the queue
    keys = write_files(tmp_path / "in", 20)
    job = _submit(home, tmp_path / "in", keys)
    queue = open_queue(home.settings.queue, name=MODEL)
    while leases := queue.receive(100, visibility_timeout_s=600):
        for lease in leases:
            queue.ack(lease)
    queue.close()
    # When a worker starts (the sweeper's quiet period set to nothing)
    home.run("worker", "--model", MODEL, "--max-idle", "1", GPUFLEET_SWEEP_QUIET_S="0")
    # Then its sweep put the items back on the queue, and it did them all
    status = home.json("status", job)
    assert (status["state"], status["done"]) == ("succeeded", 20)


def _interrupted_wait(home: Home, tmp_path: Path, signals: int) -> tuple[str, str, int]:
    """`submit --wait` of a slow job, sent SIGINT `signals` times once work has started:
    (job, what it printed, exit code)."""
    keys = write_files(tmp_path / "in", 300)
    manifest = home.path / "slow.txt"
    manifest.write_text("\n".join(keys) + "\n")
    waiting = home.spawn("submit", str(manifest), "--input", (tmp_path / "in").as_uri() + "/",
                         "--model", "synthetic?item_ms=50", "--wait", GPUFLEET_CHUNK_SIZE="4")
    index = home.index()
    home.wait_for(lambda: any(j.counts.done for j in index.jobs()), what="a first item")
    [job] = [j.id for j in index.jobs()]
    waiting.send_signal(signal.SIGINT)
    if signals == 2:
        home.wait_for(lambda: "press Ctrl-C again" in home.logs(), what="the first answer")
        waiting.send_signal(signal.SIGINT)
    code = waiting.wait(timeout=60)
    index.close()
    return job, home.logs(), code


def test_ctrl_c_on_submit_wait_stops_the_workers_and_the_job_goes_on(home: Home,
                                                                    tmp_path: Path) -> None:
    # Given `submit --wait` of 300 slow items, with the local workers it started busy
    # When Ctrl-C is pressed once
    job, printed, code = _interrupted_wait(home, tmp_path, signals=1)
    # Then it said what it does, stopped its workers, and said that the job goes on
    assert code == 130
    assert "interrupted: stopping the local workers" in printed
    assert f"job {job} goes on" in printed and "Traceback" not in printed
    index = home.index()
    assert index.live_workers() == []
    status = index.job(job)
    assert not status.cancelled and status.counts.pending > 0
    index.close()


def test_a_second_ctrl_c_cancels_the_job(home: Home, tmp_path: Path) -> None:
    # Given `submit --wait` of 300 slow items, with the local workers it started busy
    # When Ctrl-C is pressed twice
    job, printed, code = _interrupted_wait(home, tmp_path, signals=2)
    # Then the job is cancelled, and its counts add up
    assert code == 130
    assert f"cancelled job {job}" in printed
    index = home.index()
    status = index.job(job)
    assert status.state.value == "cancelled" and status.counts.pending == 0
    assert status.counts.done + status.counts.failed + status.counts.cancelled == 300
    assert index.live_workers() == []
    index.close()
