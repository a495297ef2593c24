"""Ray Data doing a benchmark's work, timed the same way each time.

Ray is not a dependency of gpufleet (``pip install 'ray[data]'`` to compare): without
it ``run_ray`` returns None and the caller says the comparison was skipped.

Ray is started with ``num_cpus`` = the cores, and the pipeline run once on a few
files before the clock starts (Ray's workers started, its operators imported), so
the figure is the pipeline's own wall time over every file. Records are counted
from the JSON files it writes.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (ray, the folder read, the folder written) -> None
RayPipeline = Callable[[Any, Path, Path], None]


@dataclass(frozen=True)
class RayRun:
    done: int  # records written
    wall: float  # seconds of the timed run
    setup: float  # starting Ray and the warm-up run

    @property
    def rate(self) -> float:
        return self.done / self.wall


def run_ray(root: Path, objects: Path, cores: int, pipeline: RayPipeline, *,
            warm_files: int = 0) -> RayRun | None:
    try:
        import ray
        import ray.data
    except ImportError:
        return None
    setup = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # a line per run otherwise
        warm = root / "ray-warm"
        warm.mkdir()
        for path in sorted(p for p in objects.rglob("*") if p.is_file())[
                :warm_files or cores * 4]:
            shutil.copyfile(path, warm / path.name)
        pipeline(ray, warm, root / "ray-warm-out")
        out = root / "ray-out"
        started = time.perf_counter()
        setup = started - setup
        pipeline(ray, objects, out)
        wall = time.perf_counter() - started
    finally:
        ray.shutdown()
    records = sum(len(p.read_text().splitlines()) for p in out.rglob("*.json"))
    return RayRun(records, wall, setup)
