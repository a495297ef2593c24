"""A result object's bytes: the item's JSON with the model (and chain), whatever its key holds."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from gpufleet.domain import ItemResult, ItemStatus, Tag


def _result(key: str) -> ItemResult:
    return ItemResult("job-1", key, ItemStatus.DONE, tags=(Tag("n01", "cat", 0.75),),
                      worker="w", finished_at=1.5)


def test_a_document_holds_the_result_the_model_and_the_chain() -> None:
    doc = json.loads(_result("a/b.jpg").document("synthetic", "exif|rgb"))
    assert doc == {**_result("a/b.jpg").to_json(), "model": "synthetic", "preprocess": "exif|rgb"}
    assert "preprocess" not in json.loads(_result("a").document("synthetic"))


# Lone surrogates too: a file name that was not UTF-8 arrives as one (surrogateescape).
@given(st.text(st.characters(exclude_categories=())))
@example("photo-\udcff.jpg")
def test_any_key_is_written_and_read_back(key: str) -> None:
    assert json.loads(_result(key).document("m"))["key"] == key
