"""Untrusted JSON: nesting bounded before parsing, numbers range-checked."""

from __future__ import annotations

import json

import pytest

from gpufleet.jsonsafe import MAX_DEPTH, JsonRefused, depth_problem, loads


@pytest.mark.parametrize("text, why", [
    ("[" * 100_000 + "]" * 100_000, "nested more than"),
    ('{"a":' * 50_000 + "1" + "}" * 50_000, "nested more than"),
    ("[" * 100_000, "nested more than"),
    ("9" * 5_000, "digits"),
    ('{"priority": ' + "9" * 400 + "}", "digits"),
    ("1e400", "out of range"),
    ("-1e400", "out of range"),
    ("[NaN]", "NaN"),
    ("Infinity", "Infinity"),
])
def test_hostile_json_is_refused_with_one_line(text: str, why: str) -> None:
    with pytest.raises(JsonRefused, match=why) as caught:
        loads(text)
    assert "\n" not in str(caught.value)


def test_brackets_inside_strings_do_not_count_and_fair_json_parses() -> None:
    doc = {"items": ["[[[[" * 100, '"]]]', "a\\\"[b"], "n": [[[1.5, -2, 1e308]]]}
    assert loads(json.dumps(doc)) == doc
    assert depth_problem("[" * MAX_DEPTH + "]" * MAX_DEPTH) is None
    assert depth_problem("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


@pytest.mark.parametrize("text", ['{"a": }', '{"key": "b.jpg"', "]]", "[[1]"])
def test_other_bad_json_is_a_decode_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        loads(text)
