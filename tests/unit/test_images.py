"""decode_photo: hostile input becomes ImageError; real photos come out RGB and upright.

Every input is made here, in memory. Huge images are only declared, never allocated.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gpufleet.errors import ImageError
from gpufleet.imaging.photos import decode_photo, sniff_format

LIMIT = 120_000_000


def encode(im: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png(width: int, height: int, *chunks: bytes, colour_type: int = 0) -> bytes:
    """A PNG with the given header and chunks, then one tiny IDAT and IEND."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(chunks) + idat + png_chunk(b"IEND", b"")


def jpeg_header(width: int, height: int) -> bytes:
    """SOI and a baseline SOF0 for a one-component image, and nothing else."""
    return b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"


def photo_jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=90)


def decode(data: bytes, **kwargs: Any) -> Image.Image:
    return decode_photo(data, max_pixels=kwargs.pop("max_pixels", LIMIT), **kwargs)


# --- hostile input ------------------------------------------------------------------------


def test_zero_bytes_are_refused() -> None:
    # Given an empty object / When it is decoded / Then it is refused as empty
    with pytest.raises(ImageError, match=r"empty object \(0 bytes\)"):
        decode(b"")


@pytest.mark.parametrize(
    ("data", "start"),
    [
        (b"<html><head><title>404 Not Found</title></head></html>", "<html><h"),
        (b"just some text saved as cat.jpg\n", "just som"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "GIF89a"),
        (b"%PDF-1.7\n", "%PDF-1.7"),
    ],
)
def test_text_html_and_other_formats_named_jpg_are_refused(data: bytes, start: str) -> None:
    # Given bytes that are not a supported photo, whatever their name
    # When they are decoded / Then the error says so and shows how they start
    with pytest.raises(ImageError, match="not a supported image") as info:
        decode(data)
    assert repr(data[:8]) in str(info.value)
    assert start in str(info.value)


def test_truncated_jpeg_is_refused() -> None:
    # Given the first half of a real JPEG
    data = photo_jpeg((256, 256))
    # When it is decoded / Then it is refused as truncated
    with pytest.raises(ImageError, match="image is truncated"):
        decode(data[: len(data) // 2])


def test_jpeg_cut_inside_its_header_is_refused() -> None:
    with pytest.raises(ImageError):
        decode(photo_jpeg()[:30])


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (png(20_000, 10_000), "20000x10000 = 200,000,000 pixels"),
        (jpeg_header(15_000, 12_500), "15000x12500 = 187,500,000 pixels"),
        (jpeg_header(65_535, 65_535), "65535x65535 = 4,294,836,225 pixels"),
    ],
    ids=["png-ihdr", "jpeg-sof", "jpeg-max"],
)
def test_image_declaring_too_many_pixels_is_refused_before_decoding(
    data: bytes, declared: str
) -> None:
    # Given a header declaring more than 180 million pixels (only declared: a few bytes)
    # When it is decoded / Then it is refused from its header, naming size and limit
    with pytest.raises(ImageError, match="over the limit of 120,000,000") as info:
        decode(data)
    assert f"image declares {declared}" in str(info.value)


def test_our_limit_applies_not_pillows() -> None:
    # Given a truncated JPEG declaring 90 million pixels: over Pillow's default limit
    # (which would warn, an error under -W error) but within ours
    data = jpeg_header(10_000, 9_000)
    # When it is decoded at reduced scale
    # Then the size passes and it fails only for what it is: truncated
    with pytest.raises(ImageError) as info:
        decode(data, draft_size=(16, 16))
    assert "declares" not in str(info.value)
    # And a smaller limit refuses the same header
    with pytest.raises(ImageError, match="over the limit of 1,000,000"):
        decode(data, max_pixels=1_000_000)


@pytest.mark.parametrize("kind", [b"zTXt", b"iTXt"])
@pytest.mark.parametrize("after_idat", [False, True])
def test_png_text_chunk_compression_bomb_is_refused(kind: bytes, after_idat: bool) -> None:
    # Given a 1x1 PNG with a compressed text chunk inflating to 64 MiB (64 KiB on disk)
    bomb = zlib.compress(b"\0" * (64 * 1024 * 1024), 9)
    body = b"Comment\0\0" + bomb if kind == b"zTXt" else b"Comment\0\1\0\0\0" + bomb
    chunk = png_chunk(kind, body)
    data = png(1, 1, chunk) if not after_idat else _insert_before_iend(png(1, 1), chunk)
    # When it is decoded / Then it is refused, not inflated
    with pytest.raises(ImageError, match="PNG text chunk too large"):
        decode(data)


def _insert_before_iend(data: bytes, chunk: bytes) -> bytes:
    return data[:-12] + chunk + data[-12:]


# --- real photos --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP"])
def test_each_supported_format_decodes_to_rgb(fmt: str) -> None:
    # Given a small photo in a supported format
    data = encode(Image.new("RGB", (40, 30), (200, 30, 60)), fmt)
    assert sniff_format(data) == fmt
    # When it is decoded / Then it is an 8-bit RGB image of the same size
    im = decode(data)
    assert (im.mode, im.size) == ("RGB", (40, 30))
    assert _close(im.getpixel((20, 15)), (200, 30, 60), tolerance=12)


def test_exif_rotated_jpeg_comes_out_upright() -> None:
    # Given a 60x30 JPEG, left half red, right half blue, with EXIF orientation 6
    # (the camera was turned: display it rotated 90 degrees clockwise)
    im = Image.new("RGB", (60, 30), (255, 0, 0))
    im.paste((0, 0, 255), (30, 0, 60, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(im, "JPEG", exif=exif.tobytes(), quality=95)
    # When it is decoded
    out = decode(data)
    # Then it is 30 wide and 60 high, the left half now on top
    assert out.size == (30, 60)
    assert _close(out.getpixel((15, 10)), (255, 0, 0))
    assert _close(out.getpixel((15, 50)), (0, 0, 255))


def test_grey_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("L", (32, 32), 90), "JPEG")
    out = decode(data)
    assert out.mode == "RGB"
    assert _close(out.getpixel((5, 5)), (90, 90, 90), tolerance=3)


def test_cmyk_jpeg_becomes_rgb() -> None:
    # Given a CMYK JPEG of pure magenta+yellow ink (red)
    data = encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    # When it is decoded / Then it is RGB red
    out = decode(data)
    assert out.mode == "RGB"
    assert _close(out.getpixel((5, 5)), (255, 0, 0))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_to_8_bits_not_clipped(fmt: str) -> None:
    # Given a 16-bit grey image with 0, mid-grey and full white
    values = np.array([[0, 128 * 257, 65535]], dtype=np.uint16)
    source = Image.fromarray(values)
    assert source.mode.startswith("I;16")
    data = encode(source, fmt)
    # When it is decoded
    out = decode(data)
    # Then every value is scaled onto 0..255
    assert out.mode == "RGB"
    assert [out.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128,) * 3, (255,) * 3]


def test_16_bit_rgb_png_becomes_8_bit_rgb() -> None:
    # Given a 16-bit-per-channel RGB PNG (colour type 2, depth 16) of one pixel
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 16, 2, 0, 0, 0))
    row = b"\0" + struct.pack(">HHH", 65535, 32896, 0)
    data = (b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"IDAT", zlib.compress(row))
            + png_chunk(b"IEND", b""))
    out = decode(data)
    assert (out.mode, out.getpixel((0, 0))) == ("RGB", (255, 128, 0))


@pytest.mark.parametrize(
    ("make", "fmt"),
    [
        (lambda: Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG"),
        (lambda: Image.new("LA", (4, 4), (0, 0)), "PNG"),
        (lambda: Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "WEBP"),
        (lambda: _palette_with_transparency(), "PNG"),
        (lambda: _rgb_with_trns(), "PNG"),
    ],
    ids=["rgba", "la", "webp-rgba", "p-transparency", "rgb-trns"],
)
def test_transparent_pixels_are_composited_on_white(make: Any, fmt: str) -> None:
    # Given an image whose pixels are fully transparent
    data = encode(make(), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    # When it is decoded / Then they are white, in RGB
    out = decode(data)
    assert out.mode == "RGB"
    assert out.getpixel((1, 1)) == (255, 255, 255)


def test_half_transparent_red_becomes_pink() -> None:
    data = encode(Image.new("RGBA", (2, 2), (255, 0, 0, 128)), "PNG")
    assert _close(decode(data).getpixel((0, 0)), (255, 127, 127), tolerance=2)


def test_opaque_palette_image_keeps_its_colours() -> None:
    data = encode(Image.new("RGB", (4, 4), (0, 128, 255)).convert("P"), "PNG")
    out = decode(data)
    assert out.mode == "RGB"
    assert _close(out.getpixel((0, 0)), (0, 128, 255), tolerance=30)


def test_draft_decodes_a_large_jpeg_at_reduced_scale_but_never_below_the_request() -> None:
    # Given a 2000x1200 JPEG
    data = photo_jpeg((2000, 1200))
    # When it is decoded with a draft size of 256x256
    out = decode(data, draft_size=(256, 256))
    # Then it is decoded at 1/4 scale: smaller, but both sides still >= 256
    assert out.size == (500, 300)
    # And without a draft it is full size
    assert decode(data).size == (2000, 1200)


def test_draft_size_applies_to_the_upright_image() -> None:
    # Given a 2048x512 JPEG stored on its side (EXIF orientation 6: upright it is 512x2048)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.new("RGB", (2048, 512), (9, 9, 9)), "JPEG", exif=exif.tobytes())
    # When it is decoded asking for at least 1024 wide and 128 high, upright
    out = decode(data, draft_size=(1024, 128))
    # Then it is not reduced: upright it is only 512 wide already
    assert out.size == (512, 2048)


def _palette_with_transparency() -> Image.Image:
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.info["transparency"] = 1
    return im


def _rgb_with_trns() -> Image.Image:
    im = Image.new("RGB", (4, 4), (10, 20, 30))
    im.info["transparency"] = (10, 20, 30)
    return im


def _close(pixel: Any, expected: tuple[int, ...], *, tolerance: int = 8) -> bool:
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


# --- fuzzing ------------------------------------------------------------------------------

MAGICS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBPVP8 ", b"II*\0", b"MM\0*",
          b"BM"]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decodes_or_refuses(data: bytes) -> None:
    try:
        im = decode_photo(data, max_pixels=4_000_000, draft_size=(64, 64))
    except ImageError as exc:
        assert str(exc)
    else:
        assert im.mode == "RGB"
        assert im.width * im.height <= 4_000_000


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_raise_image_error(data: bytes) -> None:
    _decodes_or_refuses(data)


@FUZZ
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_bytes_behind_a_valid_magic_decode_or_raise_image_error(magic: bytes, rest: bytes) -> None:
    _decodes_or_refuses(magic + rest)


VALID = {fmt: encode(Image.new("RGBA" if fmt in ("PNG", "WEBP") else "RGB", (24, 16),
                               (40, 90, 200, 180)[: 4 if fmt in ("PNG", "WEBP") else 3]), fmt)
         for fmt in ("PNG", "WEBP", "TIFF", "BMP")}
VALID["JPEG"] = photo_jpeg((24, 16))


@FUZZ
@given(
    st.sampled_from(sorted(VALID)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 10_000),
)
def test_mutated_valid_images_decode_or_raise_image_error(
    fmt: str, edits: list[tuple[int, int]], cut: int
) -> None:
    # Given a valid image with a few bytes overwritten and possibly cut short
    data = bytearray(VALID[fmt])
    for position, value in edits:
        data[position % len(data)] = value
    # When it is decoded / Then it is RGB or an ImageError, never anything else
    _decodes_or_refuses(bytes(data[: max(1, len(data) - cut % len(data))]))
