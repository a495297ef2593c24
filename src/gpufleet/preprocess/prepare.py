"""A chain applied to one object: header checked by the size filters, decoded, steps run.

The decode is the safe one (imaging/photos.py), with the pixel limit and the
decode budget, but it leaves the EXIF orientation alone: turning the image
upright is the chain's ``exif`` step, so a chain says everything done to the
pixels. The image is RGB, alpha composited on white, when the steps begin.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

from gpufleet.errors import ConfigError, ImageError, ItemError, ItemSkipped
from gpufleet.imaging.budget import DecodeBudget
from gpufleet.imaging.photos import decode_photo
from gpufleet.preprocess.chain import Chain, Step
from gpufleet.preprocess.steps import BUILTINS, FILTERS, Apply, encode
from gpufleet.registry import load_attribute

_HANDED_OVER_AS = "tiff"  # what a model that reads bytes gets, unless format= says (steps.py)


class Preparer:
    """Runs one chain on many objects, from many threads: it holds no per-item state."""

    def __init__(self, chain: Chain, *, max_pixels: int, budget: DecodeBudget | None = None,
                 draft_size: tuple[int, int] | None = None) -> None:
        self.chain, self.max_pixels, self.budget = chain, max_pixels, budget
        self.draft_size = draft_size  # the model's input size: a JPEG may decode smaller
        self.min_side, self.max_side = chain.bound("min-size"), chain.bound("max-size")
        self.steps: list[tuple[str, Apply]] = [
            (str(s), _load(s)) for s in chain.steps if s.name not in FILTERS]
        formats = [s.arg.lower() for s in chain.steps if s.name == "format" and s.arg]
        self.output_format = formats[-1] if formats else _HANDED_OVER_AS

    def image(self, data: bytes) -> Image.Image:
        """The object, decoded and put through the chain. Raises ItemSkipped for an image a
        filter leaves out, ImageError for one that cannot be decoded or a step refused."""
        image = decode_photo(data, max_pixels=self.max_pixels, draft_size=self.draft_size,
                             budget=self.budget, upright=False, on_size=self._filter)
        for name, apply in self.steps:
            try:
                image = apply(image)
            except ItemError:
                raise
            except Exception as exc:  # a step's failure on this input is this item's
                raise ImageError(f"preprocess step {name} failed: {exc!r}"[:300]) from exc
            if not isinstance(image, Image.Image):
                raise ImageError(f"preprocess step {name} returned {type(image).__name__}, "
                                 "not an image")
        return image

    def encoded(self, image: Image.Image) -> bytes:
        """The prepared image as bytes, for a model that reads bytes."""
        if image.mode not in ("L", "RGB"):  # a user step's odd mode: what every format takes
            image = image.convert("RGB")
        return encode(image, self.output_format)

    def _filter(self, width: int, height: int) -> None:
        if self.min_side is not None and min(width, height) < self.min_side:
            raise ItemSkipped(f"{width}x{height} is under min-size={self.min_side}")
        if self.max_side is not None and max(width, height) > self.max_side:
            raise ItemSkipped(f"{width}x{height} is over max-size={self.max_side}")


def _load(step: Step) -> Apply:
    if not step.plugin:
        return BUILTINS[step.name].make(step.arg)
    try:
        found = load_attribute(step.name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot load preprocess step {step.name}: {exc}") from exc
    if not callable(found):
        raise ConfigError(f"preprocess step {step.name} is not a function")
    apply: Callable[[Image.Image], Image.Image] = found
    return apply

