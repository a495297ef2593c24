"""Preprocessing chains: parsing, the built-in steps, size filters (skipped with a reason),
user steps, and how a chain travels (task, manifest) and counts (skipped items)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from gpufleet.config import Settings
from gpufleet.domain import Counts, JobState, Task
from gpufleet.errors import ConfigError, ImageError, ItemError, ItemSkipped
from gpufleet.manifest import parse_manifest
from gpufleet.models import load_tagger
from gpufleet.preprocess.chain import canonical_chain, parse_chain
from gpufleet.preprocess.prepare import Preparer
from gpufleet.queue import Lease
from gpufleet.worker.delivery import split
from gpufleet.worker.inputs import ModelInputs

MAX_PIXELS = 50_000_000


def _jpeg(width: int, height: int, *, orientation: int = 1,
          colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    im = Image.new("RGB", (width, height), colour)
    im.paste((10, 10, 240), (0, 0, width // 4, height))  # a blue band on the left
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    im.save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares a size, with hardly any pixel data behind it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b"\x00" * 8)) + \
        chunk(b"IEND", b"")


def _prepare(spec: str, data: bytes) -> Image.Image:
    return Preparer(parse_chain(spec), max_pixels=MAX_PIXELS).image(data)


# -- parsing -----------------------------------------------------------------------------


def test_a_chain_is_spelled_one_way() -> None:
    assert str(parse_chain(" EXIF, min-size=64 ,max-size=8000,Grayscale,format=JPEG")) == \
        "exif,min-size=64,max-size=8000,grayscale,format=JPEG"
    assert canonical_chain(None) is None
    assert canonical_chain("  ") is None
    assert parse_chain("tests.preprocess_plugins:invert,exif").plugins == \
        ("tests.preprocess_plugins:invert",)


@pytest.mark.parametrize(("spec", "says"), [
    ("exif,,grayscale", "give steps separated by commas"),
    ("sharpen", "unknown preprocess step 'sharpen'"),
    ("min-size=big", "min-size=big: needs a whole number"),
    ("max-size=0", "must be from 1 to 1,000,000"),
    ("min-size", "needs a whole number"),
    ("grayscale=1", "grayscale takes no argument"),
    ("format=gif", "the format is one of png, jpeg, webp, tiff"),
    ("autocontrast=80", "must be from 0.0 to 49.0"),
    ("pkg.mod:fn=3", "a user step is package.module:function"),
    ("pkg.mod:", "a user step is package.module:function"),
    ("exif," * 40 + "exif", "over 32"),
])
def test_a_bad_chain_is_one_line_naming_the_problem(spec: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_chain(spec)
    assert says in str(raised.value)
    assert "\n" not in str(raised.value)


# -- built-in steps ------------------------------------------------------------------------


def test_without_exif_the_pixels_stay_as_stored_and_exif_turns_them_upright() -> None:
    # Given a 60x40 JPEG whose EXIF says it was stored turned (orientation 6)
    data = _jpeg(60, 40, orientation=6)
    # When it goes through chains with and without the exif step
    stored, upright = _prepare("grayscale", data), _prepare("exif", data)
    # Then only the exif step turns it
    assert stored.size == (60, 40)
    assert upright.size == (40, 60)


def test_grayscale_autocontrast_and_equalize_give_8_bit_images() -> None:
    data = _jpeg(64, 48, colour=(120, 130, 140))
    grey = _prepare("grayscale", data)
    assert grey.mode == "L"
    stretched = _prepare("grayscale,autocontrast=1", data)
    assert stretched.getextrema() == (0, 255)  # the full range, whatever the photo had
    assert _prepare("grayscale,rgb", data).mode == "RGB"
    assert _prepare("equalize", data).mode == "RGB"


def test_format_conversion_gives_what_a_file_in_that_format_holds() -> None:
    data = _jpeg(64, 48)
    png = Preparer(parse_chain("grayscale,format=png"), max_pixels=MAX_PIXELS)
    image = png.image(data)
    assert image.format == "PNG" and image.mode == "L"
    assert png.encoded(image).startswith(b"\x89PNG")
    webp = Preparer(parse_chain("format=webp"), max_pixels=MAX_PIXELS)
    assert webp.encoded(webp.image(data))[8:12] == b"WEBP"
    plain = Preparer(parse_chain("exif"), max_pixels=MAX_PIXELS)  # no format=: lossless TIFF
    assert plain.encoded(plain.image(data))[:4] == b"II*\x00"


# -- filters -------------------------------------------------------------------------------


def test_a_filtered_image_is_skipped_with_the_reason() -> None:
    data = _jpeg(100, 50)
    with pytest.raises(ItemSkipped, match=r"^100x50 is under min-size=64$"):
        _prepare("exif,min-size=64", data)
    with pytest.raises(ItemSkipped, match=r"^100x50 is over max-size=80$"):
        _prepare("max-size=80", data)
    assert _prepare("min-size=50,max-size=100", data).size == (100, 50)


def test_the_strictest_of_repeated_filters_holds() -> None:
    chain = parse_chain("min-size=10,min-size=40,max-size=900,max-size=500")
    assert (chain.bound("min-size"), chain.bound("max-size")) == (40, 500)


def test_an_oversized_image_is_skipped_from_its_header_before_any_pixel_is_decoded() -> None:
    # Given a PNG declaring 20000x10000 pixels (over the pixel limit) with no data behind it
    data = _png_header(20000, 10000)
    # When a chain with max-size meets it, it is skipped, not failed as too large or corrupt
    with pytest.raises(ItemSkipped, match="20000x10000 is over max-size=8000"):
        _prepare("max-size=8000", data)
    # And without the filter it fails on the pixel limit, as ever
    with pytest.raises(ImageError, match="over the limit"):
        _prepare("grayscale", data)


def test_a_broken_input_still_fails_with_its_reason() -> None:
    with pytest.raises(ImageError, match="not a supported image"):
        _prepare("min-size=1", b"plain text, not a photo")


# -- user steps ----------------------------------------------------------------------------


def test_a_user_step_runs_like_a_built_in() -> None:
    inverted = _prepare("tests.preprocess_plugins:invert", _jpeg(8, 8, colour=(255, 255, 255)))
    assert max(inverted.getpixel((7, 0))) <= 3  # white turned black (JPEG rounds a little)


def test_a_user_step_may_skip_and_its_mistakes_fail_only_that_item() -> None:
    with pytest.raises(ItemSkipped, match="300x100 is a panorama"):
        _prepare("tests.preprocess_plugins:skip_wide", _jpeg(300, 100))
    with pytest.raises(ImageError, match="returned str, not an image"):
        _prepare("tests.preprocess_plugins:not_an_image", _jpeg(8, 8))
    with pytest.raises(ImageError, match=r"step tests.preprocess_plugins:broken failed: "
                                         r"ZeroDivisionError"):
        _prepare("tests.preprocess_plugins:broken", _jpeg(8, 8))


@pytest.mark.parametrize("step", ["tests.preprocess_plugins:missing", "tests.no_such_module:fn",
                                  "tests.preprocess_plugins:NOT_CALLABLE"])
def test_a_step_a_worker_cannot_load_fails_each_item_with_the_reason(tmp_path: Path,
                                                                      step: str) -> None:
    inputs = ModelInputs(load_tagger("synthetic", Settings(home=tmp_path)), Settings(home=tmp_path))
    task = Task("j", ("a.jpg",), "file:///in/", "file:///out/", preprocess=step)
    with pytest.raises(ItemError, match=f"preprocess '{step}': cannot load preprocess step|"
                                        "is not a function"):
        inputs.make(task, _jpeg(8, 8))


# -- what a model gets -----------------------------------------------------------------------


def test_a_model_that_reads_bytes_gets_the_prepared_image_encoded(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    tagger = load_tagger("synthetic", settings)
    inputs = ModelInputs(tagger, settings)
    data = _jpeg(64, 48)
    plain = Task("j", ("a.jpg",), "file:///in/", "file:///out/")
    chained = Task("j", ("a.jpg",), "file:///in/", "file:///out/", preprocess="grayscale")
    # Without a chain the bytes go as they are; with one, the grey PNG's bytes do
    assert inputs.make(plain, data) == tagger.preprocess(data)
    grey = Preparer(parse_chain("grayscale"), max_pixels=MAX_PIXELS)
    assert inputs.make(chained, data) == tagger.preprocess(grey.encoded(grey.image(data)))


def test_efficientnet_takes_the_prepared_image_itself(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    settings = Settings(home=tmp_path)
    tagger = load_tagger("efficientnet-lite0?device=cpu", settings)
    inputs = ModelInputs(tagger, settings)
    task = Task("j", ("a.jpg",), "file:///in/", "file:///out/", preprocess="grayscale")
    x = inputs.make(task, _jpeg(320, 240))
    assert x.shape == (3, 224, 224)
    assert (x[0] == x[1]).all() and (x[1] == x[2]).all()  # grey: three equal channels


# -- how a chain travels and counts -----------------------------------------------------------


def test_a_task_carries_its_chain_only_when_it_has_one() -> None:
    plain = Task("j", ("a",), "file:///in/", "file:///out/")
    assert "preprocess" not in json.loads(plain.encode())
    chained = Task("j", ("a",), "file:///in/", "file:///out/", preprocess="exif,grayscale")
    assert Task.decode(chained.encode()) == chained
    with pytest.raises(ValueError, match="not a chain spec"):
        Task.decode(json.dumps({"job": "j", "keys": [], "input": "i", "output": "o",
                                "preprocess": 5}))


def test_a_task_split_item_by_item_keeps_its_chain() -> None:
    task = Task("j", ("a", "b", "c"), "file:///in/", "file:///out/", preprocess="grayscale")
    lease = Lease(id="1", body=task.encode(), receives=3, token="t")
    pieces = split(task, lease, recorded={"b"})
    assert [(p.keys, p.preprocess, p.attempts) for p in pieces] == [
        (("a",), "grayscale", 2), (("c",), "grayscale", 2)]


def test_a_json_manifest_may_name_a_chain() -> None:
    manifest = parse_manifest(b'{"preprocess": "exif,min-size=64", "items": ["a.jpg"]}',
                              fmt="json")
    assert manifest.preprocess == "exif,min-size=64"
    with pytest.raises(Exception, match='"preprocess" must be a chain of steps'):
        parse_manifest(b'{"preprocess": 3, "items": ["a.jpg"]}', fmt="json")


@pytest.mark.parametrize(("counts", "state"), [
    (Counts(total=3, done=2, failed=0, skipped=1), JobState.SUCCEEDED),
    (Counts(total=3, done=0, failed=0, skipped=3), JobState.SUCCEEDED),
    (Counts(total=3, done=0, failed=1, skipped=2), JobState.PARTIAL),
    (Counts(total=3, done=0, failed=3), JobState.FAILED),
    (Counts(total=3, done=0, failed=0, skipped=1), JobState.RUNNING),
])
def test_skipped_items_are_an_outcome_not_a_failure(counts: Counts, state: JobState) -> None:
    assert counts.state(started=True) is state
    assert counts.pending == counts.total - counts.done - counts.failed - counts.skipped
