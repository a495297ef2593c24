"""Stream intake: keys/s from Redis Streams into jobs, windows of 1000.

    python benchmarks/stream_intake.py [--keys 20000] [--window 1000] [--queue sqlite|redis]

Starts its own redis-server (no persistence) on a free port and a fresh GPUFLEET_HOME
(SQLite index; the task queue in SQLite or in the same Redis). XADDs the keys, then
times ``StreamConsumer`` from the first read until every key is in an enqueued job
(each window: dedupe lookup, events recorded, job made through ``create_job``, tasks
enqueued, XACK). For comparison, in the same run and on a fresh home, the same keys
submitted straight through ``create_job`` in jobs of the same size: the ratio is what
the stream's bookkeeping (the events table, the acks) costs over plain submission.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import redis

from gpufleet.config import Settings
from gpufleet.index import Index
from gpufleet.jobs import JobRequest, create_job
from gpufleet.models.base import canonical_spec
from gpufleet.streams.consumer import JobTemplate, StreamConsumer, WindowRules, run
from gpufleet.streams.source import open_source

MODEL = canonical_spec("synthetic?item_ms=0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: apt-get install redis-server")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(tmp)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def home(tmp: Path, name: str, queue: str, redis_url: str) -> tuple[Settings, Index]:
    env = {"GPUFLEET_HOME": str(tmp / name), "GPUFLEET_MODEL": MODEL}
    if queue == "redis":
        env["GPUFLEET_QUEUE"] = f"{redis_url}?namespace={name}"
    settings = Settings.from_env(env)
    return settings, Index(settings.db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--queue", choices=("sqlite", "redis"), default="sqlite")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gpufleet-stream-bench-"))
    proc, url = start_redis(tmp)
    try:
        keys = [f"2026/12/06/camera-{i % 97:02d}/photo-{i:08d}.jpg" for i in range(args.keys)]
        input = (tmp / "photos").as_uri() + "/"
        client = redis.Redis.from_url(url)
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.xadd("photos", {"key": key})
        pipe.execute()

        settings, index = home(tmp, "stream", args.queue, url)
        rules = WindowRules(max_items=args.window, max_s=5.0, max_backlog=0, poll_s=0.2)

        def make() -> StreamConsumer:
            return StreamConsumer(settings, index, open_source(
                f"{url}?stream=photos", index=index, consumer="bench"),
                job=JobTemplate(model=MODEL), input=input, rules=rules)

        stop = threading.Event()
        started = time.perf_counter()
        stats = run(make, stop=stop, idle_exit_s=0.3)
        stream_s = time.perf_counter() - started - 0.3  # less the idle wait that ended it
        assert stats.items == args.keys, stats
        pending = client.xpending("photos", "gpufleet-stream")["pending"]

        settings2, index2 = home(tmp, "direct", args.queue, url)
        started = time.perf_counter()
        for i in range(0, len(keys), args.window):
            create_job(settings2, index2, JobRequest(items=keys[i:i + args.window],
                                                     input=input, model=MODEL))
        direct_s = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"keys: {args.keys:,}, window: {args.window}, task queue: {args.queue}, "
          f"index: SQLite")
    print(f"Redis Streams -> jobs:        {args.keys / stream_s:10,.0f} keys/s "
          f"({stats.jobs} jobs, {stream_s:.2f} s; {pending} entries left pending)")
    print(f"create_job, same job sizes:   {args.keys / direct_s:10,.0f} keys/s "
          f"({direct_s:.2f} s)")
    print(f"ratio stream / direct:        {direct_s / stream_s:10.2f}")


if __name__ == "__main__":
    main()
