"""Object stores and indexes side by side: what one worker's I/O costs on each backend.

Prints, measured in this run: small-object puts/s and gets/s for a directory
and for S3 (moto in server mode, over HTTP on loopback: the HTTP and boto3
cost, not S3's latency), at the worker's fetch concurrency, with the client's
CPU per get (boto3's share: it holds the interpreter lock for most of it, so it
bounds one worker's reads from S3 however fast S3 answers); and result rows/s
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
from gpufleet.store import ObjectStore
from gpufleet.store.local import LocalStore
from gpufleet.store.s3 import S3Store

CONCURRENCY = 8


def rate(count: int, action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return count / (time.perf_counter() - started)


def store_rates(store: ObjectStore, objects: int) -> tuple[float, float, float]:
    """puts/s, gets/s, and this process's CPU per get in µs (the client's cost alone: what
    bounds one worker's reads however fast the store answers)."""
    keys = [f"bench/{i:06d}.jpg" for i in range(objects)]
    body = os.urandom(30_000)  # a small JPEG's size
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        puts = rate(objects, lambda: list(pool.map(lambda k: store.put(k, body), keys)))
        cpu = time.process_time()
        gets = rate(objects, lambda: list(pool.map(store.get, keys)))
        cpu_us = (time.process_time() - cpu) / objects * 1e6
    return puts, gets, cpu_us


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
            s3 = store_rates(S3Store("bench", max_pool_connections=CONCURRENCY + 2),
                             args.objects)
            postgres.start()
            pg_url = postgres.create_database()
            upgrade(pg_url)
            sqlite = index_rate(f"sqlite:///{Path(tmp) / 'index.db'}", args.rows)
            pg = index_rate(pg_url, args.rows)
        finally:
            moto.stop()
            postgres.stop()
            postgres.remove()
    print(f"object store, {args.objects} objects of 30 kB, {CONCURRENCY} threads")
    print(f"  {'backend':<22}{'puts/s':>10}{'gets/s':>10}{'client CPU/get':>16}")
    print(f"  {'directory':<22}{local[0]:>10.0f}{local[1]:>10.0f}{local[2]:>13.0f} µs")
    print(f"  {'s3 (moto, HTTP)':<22}{s3[0]:>10.0f}{s3[1]:>10.0f}{s3[2]:>13.0f} µs")
    print(f"  s3 / directory: puts {s3[0] / local[0]:.2f}x, gets {s3[1] / local[1]:.2f}x")
    print(f"index, {args.rows} results recorded in batches of 256, 5 tags each")
    print(f"  {'sqlite':<22}{sqlite:>10.0f} rows/s")
    print(f"  {'postgresql':<22}{pg:>10.0f} rows/s   ({pg / sqlite:.2f}x sqlite)")
    ceiling = min(s3[1], pg)
    print(f"  one worker's I/O ceiling on s3 + postgresql here: {ceiling:.0f} items/s "
          "(fetches and index writes run in separate threads, so the slower one bounds it)")

if __name__ == "__main__":
    main()
