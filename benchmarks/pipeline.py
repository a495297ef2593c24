"""End-to-end throughput of the embedded pipeline against its bound, measured in one run.

On the 200 sample photos copied five times under different keys (1000 items):

- model only: images/s of the tagger's inference on already decoded batches;
- decode: images/s of decode + preprocess on every core (one process per core);
- end to end: ``gpufleet submit --wait`` from the worker being ready to the last
  result written (bootstrap and whole wall time printed beside it).

On a CPU the model and the decoder share the cores, so the pipeline can at best
reach ``bound = 1 / (1/model + 1/decode)``; the ratio end-to-end / bound says how
well fetching, decoding and inference overlap (target: 0.85 or more).

Usage: python benchmarks/pipeline.py [--copies 5] [--samples DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from gpufleet.config import Settings
from gpufleet.index import Index
from gpufleet.models import load_tagger

REPO = Path(__file__).resolve().parents[1]


def _default_samples() -> Path:
    found = [p / "shared/data/imagenet-sample" for p in REPO.parents]
    return next((p for p in found if p.is_dir()), Path("/work/shared/data/imagenet-sample"))


def _preprocess_many(paths: list[str]) -> int:
    tagger = load_tagger("efficientnet-lite0", Settings.from_env({}))
    for p in paths:
        tagger.preprocess(Path(p).read_bytes())
    return len(paths)


def model_rate(files: list[Path], settings: Settings) -> tuple[float, int]:
    tagger = load_tagger("efficientnet-lite0", settings)
    tagger.bootstrap()
    inputs = [tagger.preprocess(f.read_bytes()) for f in files[:200]]
    size = tagger.batch_size
    batches = [inputs[i:i + size] for i in range(0, len(inputs), size)]
    tagger.infer(batches[0])  # warm-up
    started, done = time.perf_counter(), 0
    for _ in range(len(files) // len(inputs)):
        for batch in batches:
            tagger.infer(batch)
            done += len(batch)
    return done / (time.perf_counter() - started), size


def decode_rate(files: list[Path], cores: int) -> float:
    shards = [[str(f) for f in files[i::cores]] for i in range(cores)]
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_preprocess_many, [s[:2] for s in shards]))  # warm up the processes
        started = time.perf_counter()
        done = sum(pool.map(_preprocess_many, shards))
    return done / (time.perf_counter() - started)


def end_to_end(files: list[Path], root: Path, photos: Path) -> dict[str, float]:
    home = root / "home"
    manifest = root / "manifest.txt"
    manifest.write_text("\n".join(f.relative_to(photos).as_posix() for f in files) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    env["GPUFLEET_HOME"] = str(home)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "gpufleet", "submit", str(manifest), "--input",
                          photos.as_uri() + "/", "--wait", "--json"],
                         env=env, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - started
    summary = json.loads(out)
    index = Index(Settings(home=home).db)
    rows = list(index.iter_results(summary["job"]))
    with index.engine.connect() as conn:
        timings = conn.exec_driver_sql(
            "SELECT min(started_at), max(finished_at) FROM items WHERE job_id = ?",
            (summary["job"],)).one()
        bootstrap = conn.exec_driver_sql("SELECT max(bootstrap_s) FROM workers").scalar() or 0.0
    index.close()
    return {"rate": len(rows) / (timings[1] - timings[0]), "wall": wall, "bootstrap": bootstrap,
            "done": summary["done"], "failed": summary["failed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--samples", type=Path, default=_default_samples())
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-") as tmp:
        root = Path(tmp)
        photos = root / "photos"
        for copy in range(args.copies):
            shutil.copytree(args.samples, photos / f"copy{copy}",
                            ignore=shutil.ignore_patterns("*.csv", "*.md"))
        files = sorted(photos.rglob("*.JPEG"))
        print(f"{len(files)} images, {cores} cores")
        settings = Settings.from_env({})
        model, batch = model_rate(files, settings)
        print(f"model only (batch {batch}):       {model:7.1f} images/s")
        decode = decode_rate(files, cores)
        print(f"decode + preprocess ({cores} cores): {decode:7.1f} images/s")
        bound = 1 / (1 / model + 1 / decode)
        print(f"bound 1/(1/model + 1/decode):  {bound:7.1f} images/s")
        e2e = end_to_end(files, root, photos)
        print(f"end to end, worker ready:      {e2e['rate']:7.1f} images/s "
              f"({e2e['done']:.0f} done, {e2e['failed']:.0f} failed)")
        print(f"  bootstrap {e2e['bootstrap']:.2f} s, whole wall time {e2e['wall']:.1f} s "
              f"({len(files) / e2e['wall']:.1f} images/s including start-up)")
        print(f"ratio end to end / bound:      {e2e['rate'] / bound:7.2f}   (target >= 0.85)")


if __name__ == "__main__":
    main()
