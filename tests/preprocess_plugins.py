"""User preprocessing steps for the tests, named as package.module:function."""

from __future__ import annotations

from PIL import Image, ImageOps

from gpufleet.errors import ItemSkipped


def invert(image: Image.Image) -> Image.Image:
    return ImageOps.invert(image.convert("RGB"))


def skip_wide(image: Image.Image) -> Image.Image:
    if image.width > 2 * image.height:
        raise ItemSkipped(f"{image.width}x{image.height} is a panorama")
    return image


def not_an_image(image: Image.Image) -> str:
    return "a string"


def broken(image: Image.Image) -> Image.Image:
    raise ZeroDivisionError("a bug in the step")


NOT_CALLABLE = 42
