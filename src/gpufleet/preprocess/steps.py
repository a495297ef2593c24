"""The built-in preprocessing steps, by name: each one image in, one image out.

Size filters are not here: they judge the size the header declares, before any
pixel is decoded (prepare.py), so a huge image is skipped for the price of its
header. Every step keeps 8-bit pixels in mode L or RGB, which every model that
takes an image, and every output format, accepts.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageOps

from gpufleet.errors import ConfigError

Apply = Callable[[Image.Image], Image.Image]
# format=NAME: the Pillow format and the options it is written with.
FORMATS: dict[str, tuple[str, dict[str, object]]] = {
    "png": ("PNG", {"compress_level": 1}),
    "jpeg": ("JPEG", {"quality": 90}),
    "webp": ("WEBP", {"quality": 90}),
    # Uncompressed: lossless and about 50 times faster to write than PNG (measured on a
    # 500x375 photo: 0.5 ms against 25 ms at PNG's lowest level), so the hand-over default.
    "tiff": ("TIFF", {}),
}
SIZE_LIMIT = 1_000_000  # pixels a side: beyond any photo, and a bound on a typo


@dataclass(frozen=True, slots=True)
class Builtin:
    make: Callable[[str | None], Apply]  # the argument checked, the step made
    argument: str  # what its argument is, for errors and docs: "" when it takes none


def exif(_: str | None) -> Apply:
    return _exif


def _exif(image: Image.Image) -> Image.Image:
    # In place: otherwise an upright photo, most of them, is copied for nothing.
    ImageOps.exif_transpose(image, in_place=True)
    return image


def grayscale(_: str | None) -> Apply:
    return lambda image: image.convert("L")


def rgb(_: str | None) -> Apply:
    return lambda image: image if image.mode == "RGB" else image.convert("RGB")


def autocontrast(arg: str | None) -> Apply:
    cutoff = _number("autocontrast", arg or "0", low=0.0, high=49.0)
    return lambda image: ImageOps.autocontrast(image, cutoff=cutoff)


def equalize(_: str | None) -> Apply:
    return lambda image: ImageOps.equalize(image)


def convert_format(arg: str | None) -> Apply:
    """Encode in the format and decode again: later steps and the model see what a file in
    that format holds (JPEG's losses included)."""
    name = (arg or "").lower()
    if name not in FORMATS:
        raise ConfigError(f"preprocess step format={arg}: the format is one of "
                          f"{', '.join(FORMATS)}")

    def apply(image: Image.Image) -> Image.Image:
        again = Image.open(io.BytesIO(encode(image, name)))
        again.load()
        return again
    return apply


def encode(image: Image.Image, name: str) -> bytes:
    fmt, options = FORMATS[name]
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def size_argument(name: str, arg: str | None) -> int:
    return int(_number(name, arg, low=1, high=SIZE_LIMIT, whole=True))


def _number(name: str, arg: str | None, *, low: int | float, high: int | float,
            whole: bool = False) -> float:
    try:
        value = int(arg) if whole else float(arg)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"preprocess step {name}={arg or ''}: needs a "
                          f"{'whole ' if whole else ''}number") from None
    if not low <= value <= high:
        raise ConfigError(f"preprocess step {name}={arg}: must be from {low:,} to {high:,}")
    return value


BUILTINS: dict[str, Builtin] = {
    "exif": Builtin(exif, ""),
    "grayscale": Builtin(grayscale, ""),
    "rgb": Builtin(rgb, ""),
    "autocontrast": Builtin(autocontrast, "optional cutoff percent, 0 to 49"),
    "equalize": Builtin(equalize, ""),
    "format": Builtin(convert_format, "png, jpeg, webp or tiff"),
}
FILTERS = ("min-size", "max-size")  # the shorter side at least, the longer side at most
