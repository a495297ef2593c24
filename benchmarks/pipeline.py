"""End-to-end throughput of the embedded pipeline on the CPU against its bound, in one run.

On the 200 sample photos linked under N names (default 1000 items):

- model only: images/s of ONNX Runtime's inference on already decoded batches;
- decode: images/s of decode + preprocess on every core (one process per core);
- end to end: ``gpufleet submit --wait`` from the first item started to the last
  result written (bootstrap and whole wall time printed beside it).

On a CPU the model and the decoder share the cores, so the pipeline can at best
reach ``bound = 1 / (1/model + 1/decode)``; the ratio end-to-end / bound says how
well fetching, decoding and inference overlap (target: 0.95 or more). The bound
is measured before and after the end-to-end run: on a machine shared with other
work the cores' speed drifts, and the two figures show by how much.

Usage: python benchmarks/pipeline.py [--photos 1000] [--samples DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import cpu_decode_rate, cpu_model_rate, default_samples, end_to_end, link_photos

from gpufleet.config import Settings

MODEL = "efficientnet-lite0?device=cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--samples", type=Path, default=default_samples())
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    files = sorted(args.samples.glob("*.JPEG"))
    print(f"{args.photos} images, {cores} cores")
    before = measure_bound(files, cores)
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-") as tmp:
        root = Path(tmp)
        keys = link_photos(args.samples, root / "photos", args.photos)
        e2e = end_to_end(root, root / "photos", keys, model=MODEL)
    print(f"end to end, worker ready:      {e2e.rate:7.1f} images/s "
          f"({e2e.done} done, {e2e.failed} failed)")
    print(f"  bootstrap {e2e.bootstrap:.2f} s, whole wall time {e2e.wall:.1f} s "
          f"({args.photos / e2e.wall:.1f} images/s including start-up)")
    after = measure_bound(files, cores)
    bound = (before + after) / 2
    print(f"ratio end to end / bound:      {e2e.rate / bound:7.2f}   (target >= 0.95; "
          f"{e2e.rate / before:.2f} against the bound before, {e2e.rate / after:.2f} after)")


def measure_bound(files: list[Path], cores: int) -> float:
    """The bound, with ONNX Runtime at its best of two ways: every core on one batch at a
    time, or one batch per core side by side (the worker's default)."""
    settings = Settings.from_env({})
    one, batch = cpu_model_rate(files, settings, f"{MODEL}&streams=1&threads={cores}")
    side, _ = cpu_model_rate(files, settings, MODEL)
    model = max(one, side)
    print(f"model only (batch {batch}):       {model:7.1f} images/s "
          f"(one batch on {cores} threads {one:.1f}, {cores} side by side {side:.1f})")
    decode = cpu_decode_rate(files * 3, cores)
    print(f"decode + preprocess ({cores} cores): {decode:7.1f} images/s")
    bound = 1 / (1 / model + 1 / decode)
    print(f"bound 1/(1/model + 1/decode):  {bound:7.1f} images/s")
    return bound


if __name__ == "__main__":
    main()
