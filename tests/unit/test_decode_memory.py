"""Decoding stays within a bounded memory whatever arrives, and every photo is still decoded."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from gpufleet.imaging.budget import DecodeBudget
from gpufleet.imaging.photos import decode_photo

REPO = Path(__file__).resolve().parents[2]


def _png(width: int, height: int, mode: str) -> bytes:
    out = io.BytesIO()
    if mode == "I;16":
        Image.fromarray(np.full((height, width), 40000, np.uint16)).save(out, "PNG")
    else:
        Image.new(mode, (width, height), 200).save(out, "PNG", compress_level=1)
    return out.getvalue()


class _WatchedBudget(DecodeBudget):
    """A budget that remembers the most it ever had out at once."""

    peak = 0

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        with super().hold(nbytes):
            self.peak = max(self.peak, self.used)
            yield


def test_a_big_image_waits_for_the_budget_and_still_decodes() -> None:
    # Given a budget smaller than one image's decode, and three such images decoded at once
    budget = _WatchedBudget(1_000_000)
    data = _png(1000, 800, "RGBA")
    results: list[Image.Image] = []
    threads = [threading.Thread(target=lambda: results.append(
        decode_photo(data, max_pixels=10**8, draft_size=(256, 256), budget=budget)))
        for _ in range(3)]
    # When they decode
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then all come out, reduced before conversion, one at a time, and the budget is free
    assert [r.mode for r in results] == ["RGB"] * 3
    assert all(min(r.size) >= 512 for r in results)
    assert budget.peak == 1000 * 800 * 8
    assert budget.used == 0


def test_16_bit_images_decode_in_integers() -> None:
    im = decode_photo(_png(64, 32, "I;16"), max_pixels=10**6)
    assert im.mode == "RGB" and np.asarray(im)[0, 0].tolist() == [40000 >> 8] * 3


_CHILD = """
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from gpufleet.config import Settings
from gpufleet.models.efficientnet import EfficientNetLite0
tagger = EfficientNetLite0(Settings(home=Path(sys.argv[1])), device="cpu")
datas = [Path(p).read_bytes() for p in sys.argv[2:]]
with ThreadPoolExecutor(8) as pool:
    shapes = [x.shape for x in pool.map(tagger.cpu_preprocess, datas)]
# VmHWM: this process's own peak (ru_maxrss may carry the forking parent's over exec)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
               if line.startswith("VmHWM:"))
print(len(shapes), peak_kb // 1024)
"""


def test_six_huge_images_at_once_stay_under_a_gigabyte(tmp_path: Path) -> None:
    # Given six 40-megapixel images (16-bit grey and RGBA), decoded on 8 threads at once:
    # hundreds of megabytes each through float conversions, gigabytes in all
    files = []
    for i, mode in enumerate(["I;16", "RGBA"] * 3):
        path = tmp_path / f"big{i}.png"
        path.write_bytes(_png(8_000, 5_000, mode))
        files.append(str(path))
    # When a worker with default settings preprocesses them
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path), *files],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout.split()
    # Then every one is decoded, and the process's peak memory stays under 1 GB
    done, peak_mb = int(out[0]), int(out[1])
    assert done == 6
    assert peak_mb < 1024, f"peak {peak_mb} MB"
