"""Bookkeeping overhead of the embedded pipeline, against Ray Data doing the same work.

N small objects (a few hundred random bytes each) in a temporary folder; a model
that costs nothing (``synthetic?item_ms=0``: it hashes each object), so what is
measured is everything around the model: manifest, queue, fetch, index rows,
result objects, acks. In one run:

- gpufleet: ``gpufleet submit MANIFEST --input DIR --model synthetic?item_ms=0
  --wait --workers W`` for each W, each in a fresh GPUFLEET_HOME, then with the
  most workers and ``--results shards`` (one JSONL object per task, as Ray Data's
  ``write_json`` writes one file per block, instead of one object per item).
  items/s from the first item started to the last finished (read from the index),
  and over the command's whole wall time (start-up, enqueue and worker start
  included).
- Ray Data: ``read_binary_files(DIR)`` -> ``map`` (hash each file into one small
  JSON record, as the synthetic model does) -> ``write_json(OUT)``; Ray is
  started (``num_cpus`` = the cores) and its workers warmed up on a few files
  before the clock starts, so its figure is the pipeline's wall time.

Prints items/s of each and the ratio gpufleet / Ray Data. Ray is not a
dependency of gpufleet: without it the comparison is skipped, saying so.

Usage: python benchmarks/overhead.py [--items 20000] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any

from common import end_to_end
from ray_baseline import run_ray

MODEL = "synthetic?item_ms=0"


def make_objects(folder: Path, count: int) -> list[str]:
    """count files of 200 to 500 random bytes; their keys, in order."""
    folder.mkdir(parents=True)
    rng = random.Random(0)
    keys = [f"obj-{i:06d}.bin" for i in range(count)]
    for key in keys:
        (folder / key).write_bytes(rng.randbytes(rng.randint(200, 500)))
    return keys


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """One small JSON record per file, as the synthetic model makes from each object."""
    return {"key": os.path.basename(row["path"]), "bytes": len(row["bytes"]),
            "sha256": hashlib.sha256(row["bytes"]).hexdigest()}


def _ray_pipeline(ray: Any, objects: Path, out: Path) -> None:
    dataset = ray.data.read_binary_files(str(objects), include_paths=True)
    dataset.map(_record).write_json(str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2",
                        help="gpufleet worker counts to run, comma-separated")
    parser.add_argument("--dir", help="where objects, results and state go (default: the "
                        "system's temporary folder; /dev/shm leaves the disk out)")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)  # the cores this process may use, in a container too
    # (label, workers, submit options): every count with a result object per item, then
    # the most workers with a JSONL shard per task, the shape Ray Data's write_json has.
    runs = [(f"{w} worker(s)", w, ()) for w in counts]
    runs.append((f"{max(counts)} worker(s), --results shards", max(counts),
                 ("--results", "shards")))
    with tempfile.TemporaryDirectory(prefix="gpufleet-overhead-", dir=args.dir) as tmp:
        root = Path(tmp)
        objects = root / "objects"
        keys = make_objects(objects, args.items)
        print(f"{args.items:,} objects of 200-500 bytes, model {MODEL}, {cores} cores")
        rates: dict[str, tuple[float, float]] = {}
        for label, workers, options in runs:
            r = end_to_end(root, objects, keys, model=MODEL, workers=workers, options=options)
            rates[label] = (r.rate, args.items / r.wall)
            print(f"gpufleet, {label}: {r.rate:8,.0f} items/s first item started to last "
                  f"finished ({r.done:,} done, {r.failed:,} failed), {rates[label][1]:,.0f} "
                  f"over the whole {r.wall:.1f} s")
        ray_run = run_ray(root, objects, cores, _ray_pipeline)
        if ray_run is None:
            print("Ray Data not installed (pip install 'ray[data]'): skipping the comparison")
            return
        ray_rate = ray_run.rate
        print(f"Ray Data (map, {cores} CPUs): {ray_rate:8,.0f} items/s over "
              f"{ray_run.wall:.1f} s ({ray_run.done:,} records written; "
              f"starting Ray and warming it up took {ray_run.setup:.1f} s more)")
        for label, (window, wall) in rates.items():
            print(f"gpufleet / Ray Data, {label}: {window / ray_rate:5.2f}x "
                  f"(first to last item), {wall / ray_rate:5.2f}x (whole wall time)")


if __name__ == "__main__":
    main()
