"""End-to-end throughput of the embedded pipeline on the CPU against its bound, in one run.

On the 200 sample photos linked under N names (default 1000 items):

- model only: images/s of the worker's runtime on already decoded batches (ONNX
  Runtime in float32, or OpenVINO in bfloat16 on a CPU that has it), the better of
  one batch at a time on every core and one batch per core side by side; and ONNX
  Runtime in float32, side by side, where the worker uses bfloat16;
- decode: images/s of decode + preprocess on every core (one process per core);
- end to end: ``gpufleet submit --wait`` from the first item started to the last
  result written (bootstrap and whole wall time printed beside it);
- Ray Data doing the same job with the same model and preprocessing, where Ray is
  installed: ``read_binary_files`` -> ``map_batches`` (one actor per core, each
  decoding and tagging batches of 16 on one thread) -> ``write_json``.

On a CPU the model and the decoder share the cores, so the pipeline can at best
reach ``bound = 1 / (1/model + 1/decode)``; the ratio end-to-end / bound says how
well fetching, decoding and inference overlap (target: 0.95 or more). Where the
worker runs the model in bfloat16, the bound in float32 (Pillow + ONNX Runtime) is
printed beside it, with the ratio to it. The bounds are measured before and after
the end-to-end run: on a machine shared with other work the cores' speed drifts,
and the two figures show by how much.

Usage: python benchmarks/pipeline.py [--photos 1000] [--samples DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from common import cpu_decode_rate, cpu_model_rate, default_samples, end_to_end, link_photos
from ray_baseline import run_ray

from gpufleet.config import Settings
from gpufleet.models.bf16_cpu import cpu_has_bf16

MODEL = "efficientnet-lite0?device=cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--samples", type=Path, default=default_samples())
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    files = sorted(args.samples.glob("*.JPEG"))
    print(f"{args.photos} images, {cores} cores")
    before, before_fp32 = measure_bound(files, cores)
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-") as tmp:
        root = Path(tmp)
        keys = link_photos(args.samples, root / "photos", args.photos)
        e2e = end_to_end(root, root / "photos", keys, model=MODEL)
        print(f"end to end, worker ready:      {e2e.rate:7.1f} images/s "
              f"({e2e.done} done, {e2e.failed} failed)")
        print(f"  bootstrap {e2e.bootstrap:.2f} s, whole wall time {e2e.wall:.1f} s "
              f"({args.photos / e2e.wall:.1f} images/s including start-up)")
        after, after_fp32 = measure_bound(files, cores)  # before Ray: it lingers a while
        ray_run = run_ray(root, root / "photos", cores, _ray_tagging)
    bound = (before + after) / 2
    print(f"ratio end to end / bound:      {e2e.rate / bound:7.2f}   (target >= 0.95; "
          f"{e2e.rate / before:.2f} against the bound before, {e2e.rate / after:.2f} after)")
    if before_fp32 and after_fp32:
        print(f"ratio end to end / float32 bound: {2 * e2e.rate / (before_fp32 + after_fp32):4.2f}"
              "   (Pillow + ONNX Runtime in float32)")
    if ray_run is None:
        print("Ray Data not installed (pip install 'ray[data]'): skipping the comparison")
        return
    print(f"Ray Data, {cores} actors:            {ray_run.rate:7.1f} images/s over "
          f"{ray_run.wall:.1f} s ({ray_run.done} records; starting Ray and warming it up "
          f"took {ray_run.setup:.1f} s more)")
    print(f"gpufleet / Ray Data:           {e2e.rate / ray_run.rate:7.2f}x (worker ready), "
          f"{args.photos / e2e.wall / ray_run.rate:.2f}x (gpufleet's whole wall time)")


def measure_bound(files: list[Path], cores: int) -> tuple[float, float | None]:
    """The bound, with the worker's runtime at its best of two ways: every core on one
    batch at a time, or one batch per core side by side (the worker's default); and,
    where that runtime is OpenVINO in bfloat16, the bound with ONNX Runtime in float32."""
    settings = Settings.from_env({})
    one, batch = cpu_model_rate(files, settings, f"{MODEL}&streams=1&threads={cores}")
    side, _ = cpu_model_rate(files, settings, MODEL)
    model = max(one, side)
    bf16 = cpu_has_bf16()
    runtime = "OpenVINO bf16" if bf16 else "ONNX Runtime fp32"
    print(f"model only, {runtime} (batch {batch}): {model:7.1f} images/s "
          f"(one batch on {cores} threads {one:.1f}, {cores} side by side {side:.1f})")
    decode = cpu_decode_rate(files * 3, cores)
    print(f"decode + preprocess ({cores} cores): {decode:7.1f} images/s")
    bound = 1 / (1 / model + 1 / decode)
    print(f"bound 1/(1/model + 1/decode):  {bound:7.1f} images/s")
    if not bf16:
        return bound, None
    fp32, _ = cpu_model_rate(files, settings, f"{MODEL}&precision=fp32")
    fp32_bound = 1 / (1 / fp32 + 1 / decode)
    print(f"model only, ONNX Runtime fp32: {fp32:7.1f} images/s, bound {fp32_bound:.1f}")
    return bound, fp32_bound


class _RayTagger:
    """A Ray Data actor: the same tagger, preprocessing and model, on one thread."""

    def __init__(self) -> None:
        from gpufleet.models import load_tagger

        self.tagger = load_tagger(f"{MODEL}&streams=1&threads=1", Settings.from_env({}))
        self.tagger.bootstrap()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        tags = self.tagger.infer([self.tagger.preprocess(bytes(b)) for b in batch["bytes"]])
        return {"key": [str(p) for p in batch["path"]],
                "tags": [json.dumps([t.id for t in row]) for row in tags]}


def _ray_tagging(ray: Any, photos: Path, out: Path) -> None:
    cores = int(ray.cluster_resources()["CPU"])
    # One actor per core, each on one thread. Ray counts them as half a CPU each: at one
    # each they would hold every CPU Ray schedules, and its read tasks would never run.
    (ray.data.read_binary_files(str(photos), include_paths=True)
     .map_batches(_RayTagger, batch_size=16, concurrency=cores, num_cpus=0.5)
     .write_json(str(out)))


if __name__ == "__main__":
    main()
