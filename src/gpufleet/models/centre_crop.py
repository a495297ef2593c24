"""The reference's crop, in numbers: the shorter side resized to 256, then the centre 224.

Both paths take their geometry from here: the CPU's, where Pillow resamples only the
crop's source region (``crop_box``), and the GPU's, where torch resizes a group of
photos of one size whole and slices the crop out (``resized_crop``; a strip whose
resized copy would be huge is left to the CPU's path).
"""

from __future__ import annotations

RESIZE, CROP = 256, 224


def resized_crop(width: int, height: int) -> tuple[int, int, int, int]:
    """(width, height) of a width x height image once its shorter side is 256, and the
    (left, top) of the centre 224 in that resized image."""
    if width <= height:
        new_w, new_h = RESIZE, int(RESIZE * height / width)
    else:
        new_w, new_h = int(RESIZE * width / height), RESIZE
    return new_w, new_h, round((new_w - CROP) / 2.0), round((new_h - CROP) / 2.0)


def crop_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The region of a width x height image that becomes the centre 224 once its shorter
    side is resized to 256: (left, top, right, bottom) in its own pixels."""
    new_w, new_h, left, top = resized_crop(width, height)
    sx, sy = width / new_w, height / new_h
    return (left * sx, top * sy, (left + CROP) * sx, (top + CROP) * sy)
