"""Object stores and indexes side by side: what one worker's I/O costs on each backend.

Prints, measured in this run: small-object puts/s and gets/s for a directory
and for S3 (moto in server mode, over HTTP on loopback: the HTTP and boto3
cost, not S3's latency), from 8 threads, by boto3 and by the
AWS CRT (store/s3_crt.py), with the client's CPU per get and what the gets
leave of the interpreter lock to a thread running Python beside them: boto3
holds the lock for most of its CPU, which bounds one worker's reads from S3
however fast S3 answers; and result rows/s
recorded in the index (batches of 256, five tags each) for SQLite and
PostgreSQL (a throwaway local cluster). Not a test: nothing here decides
anything, and moto is far slower than S3 itself for the server's share.

    .venv/bin/python benchmarks/store_index.py [--objects 2000] [--rows 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
from tests.servers import MotoServer, PostgresServer

from gpufleet.domain import ItemResult, ItemStatus, Tag
from gpufleet.index import Index
from gpufleet.index.migrate import upgrade
from gpufleet.store import Location, ObjectStore
from gpufleet.store.local import LocalStore
from gpufleet.store.s3 import S3Store
from gpufleet.store.s3_crt import crt_available

CONCURRENCY = 8
PIECE = 8  # keys a worker's fetch thread reads together (worker/pipeline.py)


def rate(count: int, action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return count / (time.perf_counter() - started)


class LockProbe:
    """A thread running Python beside the gets: the share of its own speed it keeps says
    how much of the interpreter lock the gets leave to the rest of a worker."""

    def __init__(self) -> None:
        self.loops = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        while not self._stop.is_set():
            for _ in range(1000):
                pass
            self.loops += 1

    def rate(self, seconds: float) -> float:
        start = self.loops
        time.sleep(seconds)
        return (self.loops - start) / seconds

    def __enter__(self) -> LockProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def store_rates(store: ObjectStore, objects: int) -> tuple[float, float, float, float, float]:
    """puts/s, gets/s, this process's CPU per get in µs, and the share of it in user space
    (the client's cost alone: Python's share holds the interpreter lock, and bounds one
    worker's reads however fast the store answers). Puts and gets in pieces of PIECE
    keys (Location.put_many and get_many: all in flight at once through the CRT), one
    piece per thread."""
    keys = [f"bench/{i:06d}.jpg" for i in range(objects)]
    pieces = [keys[i:i + PIECE] for i in range(0, objects, PIECE)]
    location = Location(store, "", "bench:")
    body = os.urandom(30_000)  # a small JPEG's size
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        puts = rate(objects, lambda: list(pool.map(
            lambda piece: location.put_many([(k, body) for k in piece]), pieces)))
        before = os.times()
        gets = rate(objects, lambda: list(pool.map(location.get_many, pieces)))
        after = os.times()
        with LockProbe() as probe:
            alone = probe.rate(1.0)
            loops, started = probe.loops, time.perf_counter()
            list(pool.map(location.get_many, pieces))
            kept = (probe.loops - loops) / (time.perf_counter() - started) / alone
    user, system = after.user - before.user, after.system - before.system
    return (puts, gets, (user + system) / objects * 1e6, user / max(1e-9, user + system),
            kept)


def index_rate(url: str, rows: int) -> float:
    index = Index(url)
    keys = [f"photos/{i:07d}.jpg" for i in range(rows)]
    index.create_job("bench", model="m", input="i", output="o", keys=keys)
    tags = tuple(Tag(f"n{i:08d}", f"label {i}", 0.1) for i in range(5))
    batches = [[ItemResult(job="bench", key=k, status=ItemStatus.DONE, tags=tags)
                for k in keys[i:i + 256]] for i in range(0, rows, 256)]
    result = rate(rows, lambda: [index.record(b) for b in batches] and None)
    index.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        moto = MotoServer(Path(tmp) / "moto")
        moto.start()
        postgres = PostgresServer()
        try:
            os.environ.update(moto.env)
            boto3.client("s3").create_bucket(Bucket="bench")
            local = store_rates(LocalStore(Path(tmp) / "bucket"), args.objects)
            s3 = store_rates(S3Store("bench", max_pool_connections=CONCURRENCY + 2,
                                     use_crt=False), args.objects)
            crt = store_rates(S3Store("bench", max_pool_connections=CONCURRENCY + 2),
                              args.objects) if crt_available() else None
            postgres.start()
            pg_url = postgres.create_database()
            upgrade(pg_url)
            sqlite = index_rate(f"sqlite:///{Path(tmp) / 'index.db'}", args.rows)
            pg = index_rate(pg_url, args.rows)
        finally:
            moto.stop()
            postgres.stop()
            postgres.remove()
    print(f"object store, {args.objects} objects of 30 kB, {CONCURRENCY} threads, "
          f"{PIECE} at a time per thread")
    print(f"  {'backend':<26}{'puts/s':>8}{'gets/s':>8}{'client CPU/get':>16}"
          f"{'in user space':>15}{'Python beside':>15}")
    rows = [("directory", local), ("s3 (moto), boto3", s3)]
    if crt is not None:
        rows.append(("s3 (moto), by the CRT", crt))
    for name, r in rows:
        print(f"  {name:<26}{r[0]:>8.0f}{r[1]:>8.0f}{r[2]:>13.0f} µs{r[3]:>14.0%}{r[4]:>14.0%}")
    print("  (Python beside: the share of its speed a thread running Python keeps while "
          "the gets run; the rest went to the gets, the lock's and the cores' share)")
    if crt is None:
        print("  (awscrt not installed: no CRT figures; pip install awscrt)")
    print(f"  s3 / directory: puts {s3[0] / local[0]:.2f}x, gets {s3[1] / local[1]:.2f}x")
    print(f"index, {args.rows} results recorded in batches of 256, 5 tags each")
    print(f"  {'sqlite':<22}{sqlite:>10.0f} rows/s")
    print(f"  {'postgresql':<22}{pg:>10.0f} rows/s   ({pg / sqlite:.2f}x sqlite)")
    ceiling = min(s3[1], pg)
    print(f"  one worker's I/O ceiling on s3 + postgresql here: {ceiling:.0f} items/s "
          "(fetches and index writes run in separate threads, so the slower one bounds it)")

if __name__ == "__main__":
    main()
