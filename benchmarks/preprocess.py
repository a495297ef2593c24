"""Decode throughput with and without a preprocessing chain, measured in the same run.

What a worker's decode threads do per item for the built-in tagger
(EfficientNet-Lite0 on the CPU path): the bytes to a normalised 224x224 crop
(``ModelInputs.make``), with no chain (the model's own decode), and through
chains: the typical ``exif,min-size=64,max-size=8000``, and a heavier one that
also turns the photo grey and stretches its contrast. Then a model that reads
bytes (synthetic), given the prepared image re-encoded (uncompressed TIFF): the
cost of handing a prepared image to such a model. Each figure is images/s over
one process per core on the sample photos; configurations alternate in rounds
and the median round is printed, with its ratio to no chain.

Usage: python benchmarks/preprocess.py [--rounds 3] [--repeat 2] [--samples DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from statistics import median

from common import default_samples

from gpufleet.config import Settings
from gpufleet.domain import Task
from gpufleet.models import load_tagger
from gpufleet.worker.inputs import ModelInputs

CONFIGS = [  # (label, model, chain)
    ("no chain", "efficientnet-lite0?device=cpu", None),
    ("exif,min-size=64,max-size=8000", "efficientnet-lite0?device=cpu",
     "exif,min-size=64,max-size=8000"),
    ("... + grayscale,autocontrast=1", "efficientnet-lite0?device=cpu",
     "exif,min-size=64,max-size=8000,grayscale,autocontrast=1"),
    ("synthetic (bytes), no chain", "synthetic", None),
    ("synthetic (bytes), typical + TIFF", "synthetic", "exif,min-size=64,max-size=8000"),
]


def _decode_many(args: tuple[list[str], str, str | None, str]) -> int:
    paths, model, chain, home = args
    settings = Settings(home=Path(home))
    inputs = ModelInputs(load_tagger(model, settings), settings)
    task = Task("bench", ("x",), "file:///in/", "file:///out/", preprocess=chain)
    blobs = [Path(p).read_bytes() for p in paths]
    for data in blobs:
        inputs.make(task, data)
    return len(blobs)


def rate(pool: ProcessPoolExecutor, shards: list[list[str]], model: str, chain: str | None,
         home: str) -> float:
    list(pool.map(_decode_many, [(s[:2], model, chain, home) for s in shards]))  # warm up
    started = time.perf_counter()
    done = sum(pool.map(_decode_many, [(s, model, chain, home) for s in shards]))
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2, help="passes over the photos a round")
    parser.add_argument("--samples", type=Path, default=default_samples())
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    files = [str(f) for f in sorted(args.samples.glob("*.JPEG"))] * args.repeat
    shards = [files[i::cores] for i in range(cores)]
    print(f"{len(files)} decodes a round ({len(files) // args.repeat} photos), {cores} cores, "
          f"{args.rounds} rounds")
    rates: dict[str, list[float]] = {label: [] for label, _, _ in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-") as home, \
            ProcessPoolExecutor(cores) as pool:
        for _ in range(args.rounds):
            for label, model, chain in CONFIGS:
                rates[label].append(rate(pool, shards, model, chain, home))
    base = {model: median(rates[label]) for label, model, chain in CONFIGS if chain is None}
    for label, model, _ in CONFIGS:
        r = median(rates[label])
        print(f"{label:36s} {r:8.1f} images/s   ratio to no chain {r / base[model]:5.2f}")


if __name__ == "__main__":
    main()
