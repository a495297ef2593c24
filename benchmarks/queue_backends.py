"""Queue backends side by side: SQLite, Redis Streams, SQS (moto): throughput and cost per item.

    python benchmarks/queue_backends.py [--tasks 5000] [--sqs-tasks 600]

Starts its own redis-server (no persistence) and moto server (``python -m
moto.server``, a separate process, as SQS would be) on free ports, and prints
for each backend, from one process:

- enqueue tasks/s (batches of 500; SQS sends them 10 to a request),
- receive + ack tasks/s (receive 10 at a time, ack each),
- the queue's cost per item at chunk sizes 1, 16, 64 and 256 as a share of a
  10 ms item: one task's enqueue, receive, ack and the heartbeats its work needs,
  with a body of that many realistic keys, divided by the chunk size; receiving
  and acking 10 tasks per call (what SQS batches; the worker acks together the
  tasks that finish together) and 1 per call (the worst case).

Targets: Redis receive + ack >= 5,000 tasks/s; at chunk 64 the cost per item
under 1% of a 10 ms item on every backend. moto answers every SQS request in
time proportional to the queue's depth, so SQS runs in rounds of 200 tasks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpufleet.queue import TaskQueue, open_queue
from gpufleet.queue.batch import ack_many

ITEM_MS = 10.0
CHUNKS = (1, 16, 64, 256)
ROUND = 200  # tasks per round on SQS (moto slows with depth)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start")


@contextmanager
def servers(tmp: Path) -> Iterator[tuple[str, str]]:
    """(redis URL, SQS queue URL), each served by a fresh process."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: apt-get install redis-server")
    redis_port, moto_port = free_port(), free_port()
    procs = [subprocess.Popen([binary, "--port", str(redis_port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                              stdout=subprocess.DEVNULL),
             subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(moto_port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        wait_for(redis_port, procs[0], "redis-server")
        wait_for(moto_port, procs[1], "moto server")
        os.environ.update({
            "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{moto_port}",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_CONFIG_FILE": str(tmp / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none")})
        from gpufleet.queue.sqs import ensure_queue_pair

        ensure_queue_pair("sqs://bench", max_receives=5)
        yield f"redis://127.0.0.1:{redis_port}/0", "sqs://bench"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()


def body(chunk: int) -> str:
    keys = ", ".join(f'"photos/2024/06/IMG_{i:06d}.jpg"' for i in range(chunk))
    return ('{"job": "20240601-120000-a1b2c3", "keys": [' + keys + '], '
            '"input": "s3://bucket/photos/", "output": "s3://bucket/results/"}')


def throughput(queue: TaskQueue, n: int, size: int) -> tuple[float, float]:
    """(enqueue tasks/s, receive + ack tasks/s) over n tasks, in rounds of size."""
    text, enqueue_s, drain_s = body(2), 0.0, 0.0
    for first in range(0, n, size):
        count = min(size, n - first)
        start = time.perf_counter()
        for i in range(0, count, 500):
            queue.enqueue([text] * min(500, count - i))
        enqueued = time.perf_counter()
        done = 0
        while done < count and (leases := queue.receive(10, visibility_timeout_s=300)):
            for lease in leases:
                queue.ack(lease)
            done += len(leases)
        assert done == count, f"received {done} of {count}"
        enqueue_s, drain_s = enqueue_s + enqueued - start, drain_s + time.perf_counter() - enqueued
    return n / enqueue_s, n / drain_s


def cost_per_task_s(queue: TaskQueue, n: int, size: int, chunk: int, batch: int) -> float:
    """Seconds of queue work per task of chunk items, over n tasks in rounds of size.

    Enqueue (500 to a call), receive batch at a time, ack them together, and the
    heartbeats such a task needs: one per 20 s of work (a third of the default lease).
    """
    text, settle_s, extend_s = body(chunk), 0.0, 0.0
    for first in range(0, n, size):
        count = min(size, n - first)
        start = time.perf_counter()
        for i in range(0, count, 500):
            queue.enqueue([text] * min(500, count - i))
        done = 0
        while done < count and (leases := queue.receive(batch, visibility_timeout_s=300)):
            t0 = time.perf_counter()
            for lease in leases:
                queue.extend(lease, visibility_timeout_s=300)
            extend_s += time.perf_counter() - t0
            ack_many(queue, leases)
            done += len(leases)
        assert done == count, f"received {done} of {count}"
        settle_s += time.perf_counter() - start
    beats = chunk * ITEM_MS / 1000 / 20.0
    return (settle_s - extend_s) / n + extend_s / n * beats


def measure(name: str, queue: TaskQueue, n: int, size: int) -> list[float]:
    enqueue, drain = throughput(queue, n, size)
    rows = []
    for batch in (10, 1):
        rows.append([cost_per_task_s(queue, max(100, n // 5), size, chunk, batch) / chunk
                     * 1000 / ITEM_MS * 100 for chunk in CHUNKS])
    for batch, shares in zip((10, 1), rows, strict=True):
        head = f"{name:<12}{enqueue:>11,.0f}{drain:>12,.0f}" if batch == 10 else " " * 35
        print(f"{head}{batch:>11}" + "".join(f"{c:>10.3f}%" for c in shares))
    return [enqueue, drain, *rows[0], *rows[1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per SQLite/Redis figure")
    parser.add_argument("--sqs-tasks", type=int, default=600, help="tasks per SQS figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, servers(Path(tmp)) as (redis_url, sqs_url):
        print(f"{'':<35}{'tasks':>11}   queue cost per item, % of a {ITEM_MS:.0f} ms item")
        print(f"{'backend':<12}{'enqueue/s':>11}{'recv+ack/s':>12}{'per call':>11}"
              + "".join(f"{'chunk ' + str(c):>11}" for c in CHUNKS))
        figures = {}
        for name, url, n, size in (
                ("sqlite", f"sqlite://{tmp}/queue.db", args.tasks, args.tasks),
                ("redis", redis_url, args.tasks, args.tasks),
                ("sqs (moto)", sqs_url, args.sqs_tasks, ROUND)):
            queue = open_queue(url, name="bench")
            try:
                figures[name] = measure(name, queue, n, size)
            finally:
                queue.close()
        redis_rate = figures["redis"][1]
        print(f"\nRedis receive+ack: {redis_rate:,.0f} tasks/s = {redis_rate / 5000:.2f}x the "
              "5,000 target; " f"vs SQLite {redis_rate / figures['sqlite'][1]:.2f}x")
        for batch, offset in ((10, 2), (1, 2 + len(CHUNKS))):
            worst = max(f[offset + CHUNKS.index(64)] for f in figures.values())
            print(f"chunk 64, {batch:>2} task(s) per receive and ack call, worst backend: "
                  f"{worst:.3f}% of a {ITEM_MS:.0f} ms item = {worst:.2f}x the 1% budget")


if __name__ == "__main__":
    main()
