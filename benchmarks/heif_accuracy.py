"""HEIC and AVIF against their JPEGs: top-1 agreement and accuracy of the built-in tagger.

Every sample photo (200, one per fifth ImageNet class) is converted in this run to
HEIC (pillow-heif, x265) and AVIF (Pillow, libavif) at the given quality, then all
three versions are tagged on the CPU. Prints top-1 accuracy of each, the share of
photos whose best tag matches the JPEG's, and decode rates (images/s, one thread,
decode_photo with the tagger's draft size) with their ratio to JPEG.

    .venv/bin/python benchmarks/heif_accuracy.py [--quality 80]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import default_samples, labels
from PIL import Image

from gpufleet.config import Settings
from gpufleet.imaging.heif import ensure_opener
from gpufleet.imaging.photos import decode_photo
from gpufleet.models.efficientnet import EfficientNetLite0


def converted(jpeg: bytes, fmt: str, quality: int) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("RGB").save(out, fmt, quality=quality)
    return out.getvalue()


def decode_rate(photos: list[bytes]) -> float:
    started = time.perf_counter()
    for data in photos:
        decode_photo(data, max_pixels=120_000_000, draft_size=(256, 256))
    return len(photos) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, default=80)
    args = parser.parse_args()
    samples = default_samples()
    truth = labels(samples)
    names = sorted(truth)
    jpegs = [(samples / n).read_bytes() for n in names]
    ensure_opener("HEIF")
    versions = {"JPEG": jpegs}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for fmt, name in (("HEIF", "HEIC"), ("AVIF", "AVIF")):
            started = time.perf_counter()
            versions[name] = list(pool.map(lambda j, f=fmt: converted(j, f, args.quality), jpegs))
            print(f"{name}: {len(jpegs)} converted in {time.perf_counter() - started:.1f} s, "
                  f"{sum(map(len, versions[name])) / sum(map(len, jpegs)):.2f}x the JPEG bytes")
    with tempfile.TemporaryDirectory() as home:
        tagger = EfficientNetLite0(Settings(home=Path(home), model_cache=Path(home) / "c"),
                                   device="cpu")
        tagger.bootstrap()
        best: dict[str, list[str]] = {}
        for name, photos in versions.items():
            inputs = [tagger.preprocess(p) for p in photos]
            best[name] = [t[0].id for t in tagger.infer(inputs)]
    jpeg_rate = decode_rate(jpegs)
    for name in versions:
        accuracy = sum(b == truth[n] for b, n in zip(best[name], names, strict=True)) / len(names)
        agree = sum(a == b for a, b in zip(best[name], best["JPEG"], strict=True)) / len(names)
        rate = decode_rate(versions[name]) if name != "JPEG" else jpeg_rate
        print(f"{name}: top-1 {accuracy:.3f}, top-1 agreement with JPEG {agree:.3f}, "
              f"decode {rate:.0f} images/s ({rate / jpeg_rate:.2f}x JPEG)")


if __name__ == "__main__":
    main()
