"""A Redis crash and restart in the middle of a job: the workers wait, then finish it."""

from __future__ import annotations

import json
from pathlib import Path

from gpufleet.queue import QueueDepth, open_queue
from tests.conftest import Home, write_files
from tests.servers import RedisServer

MODEL = "synthetic?item_ms=5"


def _logs(home: Home) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(home.path.glob("proc-*.log")))


def test_workers_wait_out_a_redis_crash_and_finish_the_job(home: Home, tmp_path: Path) -> None:
    # Given a Redis with AOF on, a job of 1500 items queued on it, and two workers
    redis = RedisServer(tmp_path / "redis", appendonly=True)
    redis.start()
    try:
        env = {"GPUFLEET_QUEUE": redis.url, "GPUFLEET_VISIBILITY_TIMEOUT_S": "3"}
        keys = write_files(tmp_path / "in", 1500)
        (home.path / "manifest.txt").write_text("\n".join(keys) + "\n")
        job = home.run("submit", home.path / "manifest.txt", "--input",
                       (tmp_path / "in").as_uri() + "/", "--model", MODEL, **env).stdout.strip()
        workers = [home.spawn("worker", "--model", MODEL, "--max-idle", "4", **env)
                   for _ in range(2)]
        home.wait_for(lambda: home.done(job) >= 200, what="200 items done")
        # When Redis is killed mid-job (no clean shutdown) and stays down a while
        assert redis.proc is not None
        redis.proc.kill()
        redis.proc.wait()
        home.wait_for(lambda: _logs(home).count("cannot receive tasks, retrying in") >= 4,
                      what="the workers to notice the outage")
        assert home.done(job) < len(keys)
        # And then comes back on the same port and data
        redis.start()
        # Then the workers carry on and the job completes
        home.wait_for(lambda: home.json("status", job)["state"] == "succeeded",
                      what="the job to finish after the restart")
        for worker in workers:
            assert worker.wait(timeout=60) == 0
        # With exactly one result row and one result object per item
        rows = [json.loads(line) for line in
                home.run("results", job, "-f", "jsonl").stdout.splitlines()]
        assert sorted(r["key"] for r in rows) == sorted(keys)
        assert {r["status"] for r in rows} == {"done"}
        out = home.path / "buckets" / "results" / job
        assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == \
            sorted(f"{k}.json" for k in keys)
        # And the waits backed off rather than hammering the dead server
        assert "retrying in 1.0 s" in _logs(home)
        # And nothing is left on the queue
        queue = open_queue(redis.url, name=MODEL)
        assert queue.depth() == QueueDepth(queued=0, in_flight=0, dead=0)
        queue.close()
    finally:
        redis.stop()
