"""Safe decoding of untrusted bytes into an 8-bit RGB photo.

Only real photo formats are accepted, recognised by their magic bytes, never
by a file name: JPEG, PNG, WebP, TIFF, BMP, AVIF (Pillow's own plugin) and
HEIC/HEIF (pillow-heif, the ``heif`` extra, registered on first use). GIF is refused: it is not a
photo format (256 colours), and Pillow grows a GIF's canvas to a frame's
extent while opening it, so its declared size alone cannot be checked first.

The pixel limit is ours (``Settings.max_pixels``), checked on the size the
header declares before any pixel data is decoded. Pillow's own global check
(``Image.MAX_IMAGE_PIXELS``) is switched off once, here, at import: it would
warn (an exception under ``-W error``) or fail on sizes our limit allows, and
saving and restoring that global around each call would race between decoding
threads. Assigning it once is thread-safe; gpufleet decodes untrusted images
only through :func:`decode_photo`, which enforces the limit itself.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Callable

import numpy as np
from PIL import (  # the plugins register the only openers we use, once, at import
    BmpImagePlugin,  # noqa: F401
    Image,
    ImageOps,
    JpegImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401
)

from gpufleet.errors import ImageError, ItemError
from gpufleet.imaging.budget import DecodeBudget
from gpufleet.imaging.heif import ensure_opener, iso_photo_format

__all__ = ["decode_photo", "jpeg_orientation", "sniff_format"]

Image.MAX_IMAGE_PIXELS = None

# Everything Pillow and its codecs raise on hostile input. Pillow also warns on
# some malformed files (corrupt EXIF, odd TIFF tags): under ``-W error`` those
# warnings arrive as exceptions, and they too mean "this input is bad".
_DECODE_ERRORS = (
    OSError, ValueError, SyntaxError, struct.error, EOFError, TypeError, IndexError,
    KeyError, ArithmeticError, MemoryError, RuntimeError, Image.DecompressionBombError,
    Warning,
)
_ORIENTATION = 0x0112
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA = ("RGBA", "RGBa", "LA", "PA")
_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "F")


def sniff_format(data: bytes) -> str | None:
    """The Pillow format name of a supported photo, from its magic bytes."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data.startswith(b"BM"):
        return "BMP"
    return iso_photo_format(data)  # AVIF, HEIF: an ISO media file's brands


def jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) of a JPEG, read from its APP1 segment alone; 1 if none.

    Cheaper than opening the image: the markers before the first frame are walked and
    only the EXIF block is parsed (by Pillow). Unreadable metadata counts as upright.
    """
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        if marker == 0xDA or (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)):
            break  # the image data or a frame header: metadata comes before them
        if marker == 0xE1 and data[at + 4:at + 10] == b"Exif\x00\x00":
            exif = Image.Exif()
            try:
                exif.load(data[at + 10:at + 2 + length])
                orientation = int(exif.get(_ORIENTATION, 1))
            except _DECODE_ERRORS:
                return 1
            return orientation if 1 <= orientation <= 8 else 1
        at += 2 + length
    return 1


def decode_photo(
    data: bytes, *, max_pixels: int, draft_size: tuple[int, int] | None = None,
    budget: DecodeBudget | None = None, upright: bool = True,
    on_size: Callable[[int, int], None] | None = None,
) -> Image.Image:
    """Decode ``data`` into an RGB image, upright, alpha composited on white.

    ``draft_size`` (width, height of the upright image) lets a JPEG decode at 1/2,
    1/4 or 1/8 scale while staying at least that large, and any other image be
    reduced by a whole factor right after decoding, before any conversion, while
    staying at least twice that large. ``budget`` bounds the decoded bytes in flight
    (see budget.py). Raises ImageError, with a short reason, for any input that is
    not a supported, intact photo within ``max_pixels``. ``upright=False`` leaves the
    EXIF orientation to the caller (a preprocessing chain's ``exif`` step);
    ``on_size(width, height)`` sees the size the header declares before any pixel is
    decoded, and may raise (a size filter's ItemSkipped) to stop there.
    """
    if not data:
        raise ImageError("empty object (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(f"not a supported image (starts with {data[:8]!r})")
    ensure_opener(fmt)
    try:
        im = Image.open(io.BytesIO(data), formats=[fmt])
        width, height = im.size
        if on_size is not None:
            on_size(width, height)
        if width * height > max_pixels:
            raise ImageError(
                f"image declares {width}x{height} = {width * height:,} pixels, "
                f"over the limit of {max_pixels:,}"
            )
        if draft_size is not None and fmt == "JPEG":
            # (Only a JPEG's EXIF is read up front: a PNG's getexif() decodes the image.)
            if im.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):  # stored on its side
                draft_size = (draft_size[1], draft_size[0])
            # Pillow's wheels decode with libjpeg-turbo already. simplejpeg was measured
            # here (200 sample photos, 8 interleaved rounds): at draft()'s size, the same
            # pixels, no faster (1.57 vs 1.55 ms a photo with the header read); at any
            # eighth (375x282, not 500x375, for 256), its scaled IDCT is not vectorised and
            # decode + preprocess took 2.62-2.74 ms against Pillow's 2.54-2.60.
            im.draft("RGB", draft_size)
        with budget.hold(_decoded_bytes(im)) if budget else contextlib.nullcontext():
            im.load()
            small = _eight_bit(im)
            if draft_size is not None:
                small = _reduced(small, draft_size)
            if upright:
                ImageOps.exif_transpose(small, in_place=True)
            return _to_rgb(small)
    except ItemError:  # ImageError, or on_size's ItemSkipped
        raise
    except _DECODE_ERRORS as exc:
        raise ImageError(_reason(fmt, exc)) from exc


def _decoded_bytes(im: Image.Image) -> int:
    """What decoding and converting an image of this header may hold at its peak."""
    width, height = im.size  # after draft(): the size it decodes at
    sample = 4 if im.mode in ("I", "F") else 2 if im.mode in _SIXTEEN_BIT else 1
    return width * height * (len(im.getbands()) * sample + 4)  # + one RGBA copy


def _reduced(im: Image.Image, at_least: tuple[int, int]) -> Image.Image:
    """Shrink by a whole factor (box filter) while staying twice at_least: the later
    resize then sees nearly the pixels it would have, and conversions cost little."""
    factor = min(im.size[0] // (2 * at_least[0]), im.size[1] // (2 * at_least[1]))
    if factor < 2 or im.mode not in _REDUCIBLE:
        return im
    return im.reduce(factor)


def _reason(fmt: str, exc: BaseException) -> str:
    text = str(exc)
    if "truncated" in text or isinstance(exc, EOFError):
        return "image is truncated"
    if "MAX_TEXT_CHUNK" in text or "text chunks" in text:
        return "PNG text chunk too large (compression bomb)"
    if isinstance(exc, MemoryError):
        return "image too large to decode in memory"
    if isinstance(exc, UnidentifiedImageError):
        return f"not a valid {fmt} image"
    detail = text.splitlines()[0][:120] if text else type(exc).__name__
    return f"corrupt {fmt} image ({detail})"


def _eight_bit(im: Image.Image) -> Image.Image:
    """16-bit grey onto 8 bits (65535 -> 255), where convert() would clip; others as they are.

    In integers, never through floats: 4 bytes a pixel, several times over, for an image
    that may be 100 megapixels.
    """
    if im.mode not in _SIXTEEN_BIT:
        return im
    grey = np.asarray(im)
    if grey.dtype != np.uint16:  # 32-bit "I", or big-endian: the 16-bit range, native
        grey = np.clip(grey, 0, 65535).astype(np.uint16)
    eight = Image.fromarray((grey >> 8).astype(np.uint8))
    eight.info = im.info  # EXIF, transparency
    return eight


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode not in ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", *_ALPHA):
        raise ImageError(f"unsupported pixel mode {im.mode}")
    if im.mode in _ALPHA or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")
