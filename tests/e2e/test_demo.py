"""`gpufleet demo` works from a clean install: real photos in, a table of tags out."""

from __future__ import annotations

import pytest

from tests.conftest import Home

pytestmark = pytest.mark.slow


def test_demo_tags_the_bundled_photos_and_says_where_the_results_are(home: Home) -> None:
    # When the demo runs in an empty home
    result = home.run("demo")
    # Then every bundled photo is listed with tags, the counts, the rate and the results
    out = result.stdout
    for name in ("cat.png", "coffee.png", "rocket.jpg", "motorcycle.png"):
        assert name in out
    assert "succeeded: 10 done, 0 failed of 10" in out
    assert "images/s" in out
    assert "results: file://" in out
    # And the espresso is recognised as one
    assert "espresso" in out
