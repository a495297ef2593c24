"""SQLite queue throughput from one process: enqueue, and receive + ack.

    python benchmarks/queue_sqlite.py [--tasks 100000] [--deep 1000000]

Prints tasks/s next to a bare ``executemany`` INSERT into a plain table on the
same disk (the floor for enqueue), and receive + ack rate on a shallow queue
next to the same on a deep one (the ratio shows receive does not slow with depth).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from gpufleet.queue.sqlite import SqliteQueue

BODY = '{"job": "j-0001", "items": ["photos/000001.jpg", "photos/000002.jpg"]}'


def bare_insert_rate(path: Path, n: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        start = time.perf_counter()
        for i in range(0, n, 1000):
            db.execute("BEGIN")
            db.executemany("INSERT INTO t (body) VALUES (?)", [(BODY,)] * min(1000, n - i))
            db.execute("COMMIT")
        return n / (time.perf_counter() - start)
    finally:
        db.close()


def enqueue_rate(queue: SqliteQueue, n: int) -> float:
    start = time.perf_counter()
    for i in range(0, n, 1000):
        queue.enqueue([BODY] * min(1000, n - i))
    return n / (time.perf_counter() - start)


def receive_ack_rate(queue: SqliteQueue, n: int, batch: int) -> float:
    done, start = 0, time.perf_counter()
    while done < n and (leases := queue.receive(batch, visibility_timeout_s=300)):
        for lease in leases:
            queue.ack(lease)
        done += len(leases)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--deep", type=int, default=1_000_000, help="depth of the deep queue")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = bare_insert_rate(Path(tmp) / "bare.db", args.tasks)
        with SqliteQueue(str(Path(tmp) / "q.db"), name="shallow") as queue:
            enq = enqueue_rate(queue, args.tasks)
            print(
                f"enqueue (batches of 1000): {enq:10,.0f} tasks/s   bare INSERT {bare:,.0f}/s"
                f"   ratio {enq / bare:.2f}"
            )
            for batch in (1, 10, 100):
                rate = receive_ack_rate(queue, args.tasks // 5, batch)
                print(f"receive({batch:>3}) + ack, shallow: {rate:10,.0f} tasks/s")
            shallow = receive_ack_rate(queue, args.tasks // 5, 10)
        with SqliteQueue(str(Path(tmp) / "q.db"), name="deep") as queue:
            enqueue_rate(queue, args.deep)
            deep = receive_ack_rate(queue, args.tasks // 5, 10)
            print(
                f"receive( 10) + ack, {args.deep:,} deep: {deep:10,.0f} tasks/s"
                f"   ratio to shallow {deep / shallow:.2f}"
            )


if __name__ == "__main__":
    main()
