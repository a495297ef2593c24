"""The CPU path's preprocessing: Pillow's bilinear crop, then (x - 127) / 128, CHW float32."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gpufleet.models.centre_crop import CROP, crop_box
from gpufleet.models.efficientnet import reference_preprocess


def _by_the_formula(im: Image.Image) -> np.ndarray:
    """The same crop, scaled the plain way: float32, minus 127, over 128, channels first."""
    crop = im.convert("RGB").resize((CROP, CROP), Image.Resampling.BILINEAR,
                                    box=crop_box(*im.size))
    x = (np.asarray(crop, dtype=np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(x.transpose(2, 0, 1))


@settings(max_examples=25, deadline=None)
@given(width=st.integers(1, 700), height=st.integers(1, 700),
       mode=st.sampled_from(["RGB", "L", "RGBA", "P"]), seed=st.integers(0, 2**32 - 1))
def test_the_model_input_is_the_formula_to_the_last_bit(width: int, height: int, mode: str,
                                                        seed: int) -> None:
    # Given an image of any size and mode
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    im = Image.fromarray(pixels).convert(mode)
    # When it is preprocessed for the model
    x = reference_preprocess(im)
    # Then it is the formula's floats exactly, in one contiguous CHW float32 array
    assert x.dtype == np.float32 and x.shape == (3, CROP, CROP) and x.flags.c_contiguous
    assert np.array_equal(x, _by_the_formula(im))
