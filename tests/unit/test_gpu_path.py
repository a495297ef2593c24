"""The GPU path's CPU half, tested where there is no GPU: header checks, EXIF, crops.

nvJPEG itself needs a GPU (tests/gpu); everything that decides what reaches it,
and the arithmetic applied after it, runs on the CPU and is tested here.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageOps

from gpufleet.errors import ImageError
from gpufleet.imaging.photos import jpeg_orientation

cuda = pytest.importorskip("gpufleet.models.cuda")
pytest.importorskip("simplejpeg")
torch = pytest.importorskip("torch")


def _jpeg(size: tuple[int, int] = (64, 48), mode: str = "RGB", orientation: int = 1,
          **save: object) -> bytes:
    rng = np.random.default_rng(0)
    bands = len(Image.new(mode, (1, 1)).getbands())
    im = Image.fromarray(rng.integers(0, 255, (size[1], size[0], bands), np.uint8).squeeze(),
                         mode if mode != "CMYK" else None)
    if mode == "CMYK":
        im = Image.frombytes("CMYK", size, rng.integers(0, 255, size[0] * size[1] * 4,
                                                        np.uint8).tobytes())
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    im.save(out, "JPEG", exif=exif.tobytes(), **save)
    return out.getvalue()


def test_a_plain_jpeg_goes_to_the_gpu_with_its_size() -> None:
    jpeg = cuda.jpeg_header(_jpeg((64, 48)), max_pixels=10_000)
    assert (jpeg.width, jpeg.height, jpeg.orientation) == (64, 48, 1)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_grey_and_colour_jpegs_go_to_the_gpu(mode: str) -> None:
    assert cuda.jpeg_header(_jpeg(mode=mode), max_pixels=10_000) is not None


def test_a_cmyk_jpeg_stays_on_the_cpu() -> None:
    assert cuda.jpeg_header(_jpeg(mode="CMYK"), max_pixels=10_000) is None


def test_the_pixel_limit_is_checked_on_the_header_before_any_decode() -> None:
    with pytest.raises(ImageError, match="64x48 = 3,072 pixels, over the limit of 3,000"):
        cuda.jpeg_header(_jpeg((64, 48)), max_pixels=3_000)


@pytest.mark.parametrize("data", [b"\xff\xd8\xff", b"\xff\xd8\xff" + b"x" * 100,
                                  _jpeg()[:40]])
def test_an_unreadable_header_is_left_to_the_cpu_path_to_explain(data: bytes) -> None:
    assert cuda.jpeg_header(data, max_pixels=10_000) is None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_read_from_the_header_and_applied_like_pillow(
        orientation: int) -> None:
    # Given a JPEG stored with each EXIF orientation
    data = _jpeg((40, 24), orientation=orientation, quality=100)
    # When the orientation is read from the header alone
    assert jpeg_orientation(data) == orientation
    # Then turning the decoded pixels upright on a tensor matches Pillow's exif_transpose
    stored = Image.open(io.BytesIO(data))
    expected = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    chw = torch.from_numpy(np.asarray(stored.convert("RGB")).copy()).permute(2, 0, 1)
    upright = cuda.orient(chw[None], orientation)[0].permute(1, 2, 0).numpy()
    assert upright.shape == expected.shape and np.array_equal(upright, expected)


@pytest.mark.parametrize("data", [b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\x00\x00",
                                  b"\xff\xd8\xff\xe1\xff\xffExif\x00\x00garbage", b"\xff\xd8"])
def test_broken_exif_counts_as_upright(data: bytes) -> None:
    assert jpeg_orientation(data) == 1


def test_the_gpu_crop_matches_the_reference_preprocessing(sample_dir: object) -> None:
    # Given real photos, decoded at full size (as nvJPEG does)
    from pathlib import Path

    from gpufleet.models.efficientnet import reference_preprocess

    files = sorted(Path(str(sample_dir)).glob("*.JPEG"))[:20]
    for f in files:
        im = Image.open(f).convert("RGB")
        chw = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
        # When the GPU path's crop and normalisation run (here on the CPU)
        gpu = cuda._normalise_(cuda._resize_crop(torch, chw[None]))[0].float().numpy()
        # Then they agree with the reference to within a few grey levels on average
        cpu = reference_preprocess(im)
        assert gpu.shape == cpu.shape == (3, 224, 224)
        assert float(np.abs(gpu - cpu).mean()) * 128 < 1.0


@given(sizes=st.lists(st.tuples(st.integers(1, 5000), st.integers(1, 5000)), max_size=40),
       limit=st.integers(1, 30_000_000))
def test_a_batch_is_decoded_in_pieces_of_bounded_pixels_in_order(
        sizes: list[tuple[int, int]], limit: int) -> None:
    # Given a batch's JPEGs of any sizes, and a bound on the pixels one decode call holds
    jpegs = [(i, cuda.EncodedJpeg(b"", w, h)) for i, (w, h) in enumerate(sizes)]
    # When they are cut into the pieces decoded together
    pieces = cuda._by_pixels(jpegs, limit)
    # Then every JPEG is in one piece, in order; a piece stays within the bound unless a
    # JPEG is over it alone; and a piece could not have taken the next one too
    assert [entry for piece in pieces for entry in piece] == jpegs
    pixels = [sum(j.width * j.height for _, j in piece) for piece in pieces]
    assert all(p <= limit or len(piece) == 1 for p, piece in zip(pixels, pieces, strict=True))
    assert all(pixels[k] + pieces[k + 1][0][1].width * pieces[k + 1][0][1].height > limit
               for k in range(len(pieces) - 1))



@pytest.mark.parametrize("size", [(12, 9000), (9000, 12), (40, 30000)])
def test_a_long_strip_is_left_to_the_cpu_path(size: tuple[int, int]) -> None:
    # Given a JPEG so long and thin that its shorter side at 256 would make a resized copy
    # of millions of pixels (the CPU path resamples only the region under the crop)
    data = _jpeg(size)
    # When its header is read, then it does not go to the GPU
    assert cuda.jpeg_header(data, max_pixels=10**8) is None


def test_a_wide_photo_short_of_a_strip_still_goes_to_the_gpu() -> None:
    # Given a panorama whose resized copy stays under the bound (8000x500 -> 4096x256)
    data = _jpeg((8000, 500))
    # When its header is read, then it goes to the GPU with its size
    jpeg = cuda.jpeg_header(data, max_pixels=10**8)
    assert jpeg is not None and (jpeg.width, jpeg.height) == (8000, 500)
