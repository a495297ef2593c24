"""HEIC/HEIF and AVIF photos: made at test time from a sample JPEG with pillow-heif and
Pillow, then decoded the way every photo is (the pixel limit on the header first)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from gpufleet.config import Settings
from gpufleet.errors import ImageError
from gpufleet.imaging import heif
from gpufleet.imaging.photos import decode_photo, sniff_format
from gpufleet.index import Index
from gpufleet.sources import submit_source

LIMIT = 120_000_000


@pytest.fixture(scope="module")
def jpeg(sample_dir: Path) -> bytes:
    return (sample_dir / "n01440764_tench.JPEG").read_bytes()


def encoded(jpeg: bytes, fmt: str) -> bytes:
    heif.ensure_opener("HEIF")  # pillow-heif's writer comes with its opener
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("RGB").save(out, fmt, quality=85)
    return out.getvalue()


@pytest.fixture(scope="module")
def photos(jpeg: bytes) -> dict[str, bytes]:
    return {fmt: encoded(jpeg, fmt) for fmt in ("HEIF", "AVIF")}


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif_decode_to_the_same_picture_as_the_jpeg(
        photos: dict[str, bytes], jpeg: bytes, fmt: str) -> None:
    # Given a HEIC and an AVIF made from a JPEG / When each is decoded
    data = photos[fmt]
    assert sniff_format(data) == fmt
    image = decode_photo(data, max_pixels=LIMIT)
    reference = decode_photo(jpeg, max_pixels=LIMIT)
    # Then it is RGB, as large, and close to the JPEG pixel for pixel (lossy both ways)
    assert image.mode == "RGB" and image.size == reference.size
    diff = np.abs(np.asarray(image, np.int16) - np.asarray(reference, np.int16))
    assert float(diff.mean()) < 8.0


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_a_draft_size_reduces_heic_and_avif_too(photos: dict[str, bytes], fmt: str) -> None:
    image = decode_photo(photos[fmt], max_pixels=LIMIT, draft_size=(100, 100))
    assert image.mode == "RGB" and image.size[0] >= 200 and image.size[1] >= 200


def declaring(data: bytes, width: int, height: int) -> bytes:
    """The photo with its declared size rewritten: the 'ispe' box (the coded size) and the
    'clap' box (the clean aperture, the size shown) where there is one."""
    out = bytearray(data)
    at = data.index(b"ispe") + 8  # box type, then version and flags
    out[at:at + 8] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    if (at := data.find(b"clap")) >= 0:
        out[at + 4:at + 20] = b"".join(n.to_bytes(4, "big") for n in (width, 1, height, 1))
    return bytes(out)


def test_a_heic_declaring_too_many_pixels_is_refused_before_decoding(
        photos: dict[str, bytes]) -> None:
    # Given a real HEIC declaring 20000x20000 pixels (400 M, over the 120 M limit)
    bomb = declaring(photos["HEIF"], 20_000, 20_000)
    # When decoded / Then refused from its header: nothing near 1.2 GB is allocated
    with pytest.raises(ImageError, match=r"20000x20000 = 400,000,000 pixels, over the limit"):
        decode_photo(bomb, max_pixels=LIMIT)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_a_size_over_the_limit_is_refused(photos: dict[str, bytes], fmt: str) -> None:
    with pytest.raises(ImageError, match=r"500x375 = 187,500 pixels, over the limit of 1,000"):
        decode_photo(photos[fmt], max_pixels=1_000)
    # An AVIF whose declared size disagrees with its AV1 stream is refused by libavif
    # while its header is parsed, before any decoding.
    with pytest.raises(ImageError):
        decode_photo(declaring(photos[fmt], 20_000, 20_000), max_pixels=LIMIT)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_truncated_heic_and_avif_are_image_errors(photos: dict[str, bytes], fmt: str) -> None:
    data = photos[fmt]
    for cut in (16, 200, len(data) // 2, len(data) - 10):
        with pytest.raises(ImageError):
            decode_photo(data[:cut], max_pixels=LIMIT)


def test_brands_decide_avif_over_a_generic_major_brand() -> None:
    def ftyp(major: bytes, *compatible: bytes) -> bytes:
        body = major + b"\0\0\0\0" + b"".join(compatible)
        return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\0" * 8

    assert sniff_format(ftyp(b"mif1", b"mif1", b"avif")) == "AVIF"
    assert sniff_format(ftyp(b"mif1", b"mif1", b"heic")) == "HEIF"
    assert sniff_format(ftyp(b"heic", b"mif1")) == "HEIF"
    assert sniff_format(ftyp(b"isom", b"mp41")) is None  # an MP4 video is not a photo
    assert sniff_format(b"\0\0\0\x10ftyp") is None


def test_without_pillow_heif_a_heic_fails_saying_what_to_install(
        photos: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a worker where pillow-heif cannot be imported and no HEIC was opened yet
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    monkeypatch.setattr(heif, "_heif_registered", False)
    # When a HEIC is decoded / Then that item fails with the extra to install
    with pytest.raises(ImageError, match=r"pip install 'gpufleet\[heif\]'"):
        decode_photo(photos["HEIF"], max_pixels=LIMIT)
    # And an AVIF still decodes: Pillow reads it itself
    assert decode_photo(photos["AVIF"], max_pixels=LIMIT).mode == "RGB"


def test_folders_and_include_take_heic_heif_and_avif(
        tmp_path: Path, photos: dict[str, bytes]) -> None:
    # Given a folder of phone photos and a note
    folder = tmp_path / "phone"
    folder.mkdir()
    for name, fmt in (("a.HEIC", "HEIF"), ("b.heif", "HEIF"), ("c.avif", "AVIF")):
        (folder / name).write_bytes(photos[fmt])
    (folder / "notes.txt").write_text("not a photo")
    settings = Settings.from_env({"GPUFLEET_HOME": str(tmp_path / "home")})
    index = Index(settings.db)
    # When submitted with --include patterns for them
    job = submit_source(settings, index, folder, include=["*.heic", "*.heif", "*.avif"],
                        model="synthetic?item_ms=0")
    # Then the photos are the job's items, the note left out
    assert sorted(i.key for i in index.results(job.id)) == ["a.HEIC", "b.heif", "c.avif"]
    assert pillow_heif.is_supported(photos["HEIF"])
