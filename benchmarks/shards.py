"""Tar shards against separate objects: what a worker's fetch stage reads per second.

The sample photos (copied round to --items) are stored twice, in this run: as
separate objects, and as WebDataset-style shards of --per-shard members. Then, at
the worker's fetch concurrency, every photo is read: each object with one GET,
each member with one ranged GET through its member key (the path a worker takes,
``Location.get``). Also timed: expanding the shards into member keys, as a
submission does. On a directory and on S3 as moto serves it over HTTP on loopback
(the HTTP and boto3 cost, not S3's latency; real S3 charges per request, ranged or
not, and a shard is one object to upload, list and keep instead of thousands).

    .venv/bin/python benchmarks/shards.py [--items 2000] [--per-shard 500]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
from common import default_samples
from tests.servers import MotoServer

from gpufleet.shards import expand_shards
from gpufleet.store import Location, open_location

CONCURRENCY = 8


def rate(count: int, action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return count / (time.perf_counter() - started)


def write(location: Location, photos: list[bytes], per_shard: int) -> tuple[list[str], list[str]]:
    """The photos as objects and as shards; the object keys and the shard keys."""
    objects = [f"objects/{i:06d}.jpg" for i in range(len(photos))]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(location.put, objects, photos))
    shards = []
    for first in range(0, len(photos), per_shard):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            for i, data in enumerate(photos[first:first + per_shard], first):
                info = tarfile.TarInfo(f"{i:06d}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        shards.append(f"shards/{first // per_shard:06d}.tar")
        location.put(shards[-1], out.getvalue())
    return objects, shards


def compare(name: str, location: Location, photos: list[bytes], per_shard: int) -> None:
    objects, shards = write(location, photos, per_shard)
    started = time.perf_counter()
    members = list(expand_shards(location, shards, max_entries=per_shard))
    expand = len(members) / (time.perf_counter() - started)
    assert len(members) == len(objects)
    # Read as a worker reads: a piece of keys per thread (Location.get_many: through the
    # AWS CRT on S3, where awscrt is installed, all of a piece's reads in flight at once).
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        separate = rate(len(objects), lambda: list(pool.map(location.get_many, pieces(objects))))
        ranged = rate(len(members), lambda: list(pool.map(location.get_many, pieces(members))))
    print(f"{name}: separate objects {separate:,.0f} items/s, tar members by ranged GET "
          f"{ranged:,.0f} items/s ({ranged / separate:.2f}x); expanding {len(shards)} "
          f"shard(s) at submission: {expand:,.0f} members/s")


def pieces(keys: list[str], size: int = 8) -> list[list[str]]:
    return [keys[i:i + size] for i in range(0, len(keys), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--per-shard", type=int, default=500)
    args = parser.parse_args()
    samples = [p.read_bytes() for p in sorted(default_samples().glob("*.JPEG"))]
    photos = [samples[i % len(samples)] for i in range(args.items)]
    print(f"{len(photos)} photos ({sum(map(len, photos)) / len(photos) / 1000:.0f} kB "
          f"average), {args.per_shard} per shard, {CONCURRENCY} fetch threads")
    with tempfile.TemporaryDirectory() as tmp:
        compare("directory", open_location(str(Path(tmp) / "bucket")), photos, args.per_shard)
        moto = MotoServer(Path(tmp) / "moto")
        moto.start()
        try:
            os.environ.update(moto.env)
            boto3.client("s3").create_bucket(Bucket="bench")
            compare("s3 (moto)", open_location("s3://bench/"), photos, args.per_shard)
        finally:
            moto.stop()


if __name__ == "__main__":
    main()
