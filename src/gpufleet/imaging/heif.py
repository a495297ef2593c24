"""HEIC/HEIF and AVIF: photos in an ISO media file, told apart by the brands of its ftyp box.

Phones save HEIC (HEVC in HEIF); AVIF is AV1 in the same container. Pillow
decodes AVIF itself (its wheels carry libavif); HEIC needs pillow-heif (the
``heif`` extra), whose opener is registered on the first HEIC seen, not at
import: a worker that never meets one never loads libheif. Both openers read
only the container's boxes when opening, so the pixel limit is checked on the
declared size before any pixel is decoded, as for every other format.
"""

from __future__ import annotations

import functools
import threading

from PIL import features

from gpufleet.errors import ImageError

__all__ = ["ensure_opener", "iso_photo_format"]

_AVIF_BRANDS = (b"avif", b"avis")
# HEVC-coded HEIF brands, and the generic image brands a HEIC may carry as its major brand.
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_MAX_BRANDS = 64  # compatible brands looked at; a real ftyp box lists a handful
_lock = threading.Lock()
_heif_registered = False


def iso_photo_format(data: bytes) -> str | None:
    """"AVIF" or "HEIF" (Pillow's format names) for an ISO media file with those brands."""
    if data[4:8] != b"ftyp" or len(data) < 16:
        return None
    size = min(int.from_bytes(data[:4], "big"), len(data), 16 + 4 * _MAX_BRANDS)
    major = data[8:12]
    brands = {major, *(data[at:at + 4] for at in range(16, size - 3, 4))}
    if brands.intersection(_AVIF_BRANDS):
        return "AVIF"  # an AVIF may say mif1 as major brand: avif among the others decides
    if brands.intersection(_HEIF_BRANDS):
        return "HEIF"
    return None


@functools.cache
def _avif_opener() -> bool:
    """Whether Pillow decodes AVIF; its opener registered. Asked once per process."""
    if not features.check("avif"):
        return False
    from PIL import AvifImagePlugin  # noqa: F401  (registers the opener)
    return True


def ensure_opener(fmt: str) -> None:
    """Make sure Pillow can open fmt; ImageError saying what to install if it cannot."""
    global _heif_registered
    if fmt == "AVIF":
        if not _avif_opener():
            raise ImageError("AVIF image: this Pillow was built without AVIF support "
                             "(install a Pillow wheel from PyPI, 11.3 or later)")
    elif fmt == "HEIF" and not _heif_registered:
        with _lock:
            if _heif_registered:
                return
            try:
                import pillow_heif
            except ImportError:
                raise ImageError("HEIC/HEIF image: decoding it needs pillow-heif: "
                                 "pip install 'gpufleet[heif]'") from None
            # Thumbnails stay unread: the primary image is the photo.
            pillow_heif.register_heif_opener(thumbnails=False)
            _heif_registered = True
