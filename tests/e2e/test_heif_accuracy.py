"""HEIC and AVIF tag as their JPEGs do: the built-in tagger on real photos converted at
test time (pillow-heif for HEIC, Pillow for AVIF). The figure on all 200 sample photos is
benchmarks/heif_accuracy.py's; this test checks one in ten, against a loose bound."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from gpufleet.config import Settings
from gpufleet.imaging.heif import ensure_opener
from gpufleet.models.efficientnet import EfficientNetLite0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EfficientNetLite0]:
    home = tmp_path_factory.mktemp("gpufleet")
    model = EfficientNetLite0(Settings(home=home, model_cache=home / "cache"), device="cpu")
    model.bootstrap()
    yield model


def converted(jpeg: bytes, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("RGB").save(out, fmt, quality=80)
    return out.getvalue()


def top1(tagger: EfficientNetLite0, photos: list[bytes]) -> list[str]:
    tags = tagger.infer([tagger.preprocess(p) for p in photos])
    return [t[0].id for t in tags]


def test_heic_and_avif_versions_get_the_jpegs_best_tag(
        tagger: EfficientNetLite0, sample_dir: Path) -> None:
    # Given one sample photo in ten, as JPEG and converted to HEIC and AVIF
    ensure_opener("HEIF")
    jpegs = [p.read_bytes() for p in sorted(sample_dir.glob("*.JPEG"))[::10]]
    assert len(jpegs) == 20
    with ThreadPoolExecutor(max_workers=2) as pool:
        heics = list(pool.map(lambda j: converted(j, "HEIF"), jpegs))
        avifs = list(pool.map(lambda j: converted(j, "AVIF"), jpegs))
    # When every version is tagged
    reference = top1(tagger, jpegs)
    # Then the best tag agrees with the JPEG's for at least 90% of the photos
    for fmt, photos in (("HEIC", heics), ("AVIF", avifs)):
        agreement = sum(a == b for a, b in zip(top1(tagger, photos), reference, strict=True))
        assert agreement / len(jpegs) >= 0.9, f"{fmt}: {agreement}/{len(jpegs)} agree"
