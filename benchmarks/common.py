"""What the benchmarks share: the sample photos, a photo set of any size, an end-to-end run.

Run from the benchmarks folder's scripts (``python benchmarks/x.py``): this module
is found beside them.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from gpufleet.config import Settings
from gpufleet.index import Index
from gpufleet.models import load_tagger

REPO = Path(__file__).resolve().parents[1]


def default_samples() -> Path:
    """The labelled photos: SAMPLE_IMAGES_DIR, else shared/ beside the checkout or above it."""
    if "SAMPLE_IMAGES_DIR" in os.environ:
        return Path(os.environ["SAMPLE_IMAGES_DIR"])
    found = [p / "shared/data/imagenet-sample" for p in REPO.parents]
    return next((p for p in found if p.is_dir()), Path("/work/shared/data/imagenet-sample"))


def labels(samples: Path) -> dict[str, str]:
    """File name -> WordNet id of the labelled sample."""
    with (samples / "labels.csv").open(newline="", encoding="utf-8") as f:
        return {r["file"]: r["wnid"] for r in csv.DictReader(f)}


def link_photos(samples: Path, folder: Path, count: int) -> list[str]:
    """count distinct keys over the sample photos, as hard links (a second for 20,000)."""
    files = sorted(samples.glob("*.JPEG"))
    folder.mkdir(parents=True, exist_ok=True)
    keys = []
    for i in range(count):
        source = files[i % len(files)]
        key = f"{i // len(files):04d}/{source.name}"
        target = folder / key
        target.parent.mkdir(exist_ok=True)
        try:
            os.link(source, target)
        except OSError:  # another file system: copy
            target.write_bytes(source.read_bytes())
        keys.append(key)
    return keys


def _preprocess_many(paths: list[str]) -> int:
    tagger = load_tagger("efficientnet-lite0?device=cpu", Settings.from_env({}))
    for p in paths:
        tagger.preprocess(Path(p).read_bytes())
    return len(paths)


def cpu_decode_rate(files: list[Path], processes: int) -> float:
    """Images/s of the reference decode + preprocess (Pillow) in one process per core."""
    shards = [[str(f) for f in files[i::processes]] for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_preprocess_many, [s[:2] for s in shards]))  # warm up the processes
        started = time.perf_counter()
        done = sum(pool.map(_preprocess_many, shards))
    return done / (time.perf_counter() - started)


def threaded_decode_rate(files: list[Path], threads: int) -> float:
    """Images/s of the same decode + preprocess in threads of one process, as a worker's
    decode pool runs it: what of the processes' rate the interpreter lock leaves."""
    tagger = load_tagger("efficientnet-lite0?device=cpu", Settings.from_env({}))
    datas = [f.read_bytes() for f in files]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(tagger.preprocess, datas[: 2 * threads]))  # warm up the threads
        started = time.perf_counter()
        for _ in pool.map(tagger.preprocess, datas, chunksize=8):  # a worker's pieces of 8
            pass
    return len(datas) / (time.perf_counter() - started)


def timed(fn: Any, n: int, repeat: int, torch: Any | None = None) -> float:
    fn()  # warm up
    if torch is not None:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    if torch is not None:
        torch.cuda.synchronize()
    return n * repeat / (time.perf_counter() - started)


def cpu_model_rate(files: list[Path], settings: Settings,
                   spec: str = "efficientnet-lite0?device=cpu") -> tuple[float, int]:
    """Images/s of the tagger's CPU runtime (ONNX Runtime, or OpenVINO in bfloat16) on
    decoded batches, run as the worker runs them: the tagger's ``streams`` batches at
    once, each from its own thread."""
    tagger = load_tagger(spec, settings)
    tagger.bootstrap()
    inputs = [tagger.preprocess(f.read_bytes()) for f in files[: tagger.batch_size]]
    streams = max(1, int(getattr(tagger, "streams", 1)))
    repeat = max(2, 20 // streams)

    def run_streams() -> None:
        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(lambda _: [tagger.infer(inputs) for _ in range(repeat)],
                          range(streams)))

    return timed(run_streams, len(inputs) * repeat * streams, 1), tagger.batch_size


class GpuSampler:
    """GPU utilisation (%) sampled from NVML every interval while running, each sample
    with its time; empty without NVML."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []  # (epoch seconds, %)
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml = pynvml
        except Exception:  # no NVML, no GPU: nothing to sample
            self._nvml = None

    @contextmanager
    def running(self) -> Iterator[GpuSampler]:
        thread = threading.Thread(target=self._run, daemon=True)
        if self._nvml is not None:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            if thread.is_alive():
                thread.join()

    def _run(self) -> None:
        assert self._nvml is not None
        while not self._stop.wait(self.interval_s):
            util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu
            self.samples.append((time.time(), int(util)))

    def summary(self, window: tuple[float, float]) -> str:
        """Utilisation while items ran (window: the first started and the last finished,
        epoch seconds), then over the whole command: its start-up (the worker's process,
        CUDA, the model's warm-up) is GPU time the job does not use."""
        if not self.samples:
            return "GPU utilisation: not measured (no NVML)"
        first, last = window
        during = [u for t, u in self.samples if first <= t <= last]
        whole = [u for _, u in self.samples]
        said = (f"median {median(during):.0f} %, mean {sum(during) / len(during):.0f} % "
                f"({len(during)} samples)" if during else "no sample (too short a run)")
        return (f"GPU utilisation while items ran: {said}; over the whole command "
                f"median {median(whole):.0f} % ({len(whole)} samples)")


@dataclass(frozen=True)
class EndToEnd:
    rate: float  # items/s from the first item started to the last finished
    window: tuple[float, float]  # those two moments, epoch seconds
    wall: float  # seconds, submit to exit, start-up included
    bootstrap: float
    done: int
    failed: int
    top: dict[str, str | None]  # key -> its best tag's id


def end_to_end(root: Path, photos: Path, keys: list[str], *, model: str, workers: int = 1,
               env: dict[str, str] | None = None, options: tuple[str, ...] = ()) -> EndToEnd:
    """``gpufleet submit --wait`` over keys (with more options, if given); rate from the
    first item started to the last."""
    home = root / f"home-{time.monotonic_ns()}"
    manifest = root / "manifest.txt"
    manifest.write_text("\n".join(keys) + "\n")
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    run_env.update(GPUFLEET_HOME=str(home), PYTHONUNBUFFERED="1", **(env or {}))
    # This checkout's code, whatever is installed.
    run_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                          run_env.get("PYTHONPATH")]))
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "gpufleet", "submit", str(manifest), "--input",
                          photos.as_uri() + "/", "--model", model, "--wait", "--json",
                          "--workers", str(workers), *options],
                         env=run_env, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - started
    summary = json.loads(out)
    index = Index(Settings(home=home).db)
    with index.engine.connect() as conn:
        first, last = conn.exec_driver_sql(
            "SELECT min(started_at), max(finished_at) FROM items WHERE job_id = ?",
            (summary["job"],)).one()
        bootstrap = conn.exec_driver_sql("SELECT max(bootstrap_s) FROM workers").scalar() or 0.0
    top = {r.key: (r.tags[0].id if r.tags else None)
           for r in index.iter_results(summary["job"])}
    index.close()
    return EndToEnd(len(keys) / max(1e-9, last - first), (first, last), wall, bootstrap,
                    summary["done"], summary["failed"], top)
