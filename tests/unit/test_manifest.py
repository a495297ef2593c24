"""Manifests: every format, key validation, duplicates, and refusals that name the line."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpufleet.errors import ManifestError
from gpufleet.keys import MAX_KEY_BYTES, key_problem
from gpufleet.manifest import (
    MAX_LINE_BYTES,
    ManifestStream,
    parse_manifest,
    read_manifest,
)


@pytest.mark.parametrize(("fmt", "text"), [
    ("json", '["a.jpg", "dir/b.jpg", "a.jpg"]'),
    ("json", '{"items": [{"key": "a.jpg"}, {"key": "dir/b.jpg"}, {"key": "a.jpg"}]}'),
    ("jsonl", '"a.jpg"\n{"key": "dir/b.jpg"}\n\n{"key": "a.jpg"}\n'),
    ("csv", "bucket,key\nphotos,a.jpg\nphotos,dir/b.jpg\nphotos,a.jpg\n"),
    ("csv", "photos,a.jpg\nphotos,dir%2Fb.jpg\nphotos,a.jpg\n"),
    ("csv", "a.jpg\r\ndir/b.jpg\r\na.jpg\r\n"),
    ("text", "a.jpg\ndir/b.jpg\n\na.jpg\n"),
])
def test_every_format_gives_the_same_keys_in_order_without_duplicates(fmt: str, text: str
                                                                      ) -> None:
    # When
    manifest = parse_manifest(text.encode(), fmt=fmt)
    # Then
    assert manifest.keys == ("a.jpg", "dir/b.jpg")
    assert manifest.duplicates == 1


def test_csv_keys_are_url_decoded_as_s3_inventory_writes_them() -> None:
    manifest = parse_manifest(b"bucket,my+photo%C3%A9.jpg\n", fmt="csv")
    assert manifest.keys == ("my photo\u00e9.jpg",)


def test_json_manifest_may_say_where_its_keys_live() -> None:
    doc = {"input": "file:///data/photos/", "items": ["a.jpg"]}
    manifest = parse_manifest(json.dumps(doc).encode(), fmt="json")
    assert manifest.input == "file:///data/photos/"


@pytest.mark.parametrize(("key", "reason"), [
    ("../x", "'..' segment"),
    ("a/../../etc/passwd", "'..' segment"),
    ("/etc/passwd", "starts with '/'"),
    ("a\x00b", "control character"),
    ("a\nb", "control character"),
    ("x" * (MAX_KEY_BYTES + 1), "longer than 1024"),
    ("\u00e9" * 513, "longer than 1024"),  # 1026 UTF-8 bytes in 513 characters
    ("", "empty key"),
    ("dir/", "ends with '/'"),
    ("a//b", "empty segment"),
    ("./a", "'.' segment"),
])
def test_a_hostile_key_is_refused_with_its_reason(key: str, reason: str) -> None:
    # Given a JSON manifest with one good key and one hostile one
    data = json.dumps(["good.jpg", key]).encode()
    # When / Then: the whole manifest is refused, naming the item and the reason
    with pytest.raises(ManifestError, match="item 1") as info:
        parse_manifest(data, fmt="json")
    assert reason in str(info.value)
    assert "nothing enqueued" in str(info.value)


def test_a_key_of_exactly_1024_bytes_is_accepted() -> None:
    assert key_problem("k" * MAX_KEY_BYTES) is None


@pytest.mark.parametrize(("fmt", "text", "where"), [
    ("jsonl", '"a.jpg"\n{"key": "b.jpg"\n', "line 2: invalid JSON"),
    ("json", '["a.jpg",', "invalid JSON: parse error: premature EOF"),
    ("json", '{"files": []}', 'expected a list of keys or {"items"'),
    ("json", '[{"name": "a.jpg"}]', "item 0: key is not a string"),
    ("jsonl", '"a.jpg"\n42\n', "line 2: key is not a string"),
    ("text", "a.jpg\n../b.jpg\n", "line 2"),
    ("text", "\n\n", "lists no items"),
])
def test_a_malformed_manifest_is_refused_naming_the_line_or_item(fmt: str, text: str,
                                                                 where: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text.encode(), fmt=fmt)
    assert where in str(info.value)


def test_binary_garbage_is_refused_as_not_utf8() -> None:
    with pytest.raises(ManifestError, match="not UTF-8"):
        parse_manifest(b"\xff\xfe\x00garbage", fmt="text")


def test_many_problems_are_summarised_not_dumped() -> None:
    data = "\n".join(["../x"] * 50).encode()
    with pytest.raises(ManifestError, match="and 45 more"):
        parse_manifest(data, fmt="text")


def test_the_format_follows_the_file_suffix(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "m.jsonl"  # type: ignore[operator]
    path.write_text('{"key": "a.jpg"}\n')
    assert read_manifest(path).keys == ("a.jpg",)
    other = tmp_path / "m.xml"  # type: ignore[operator]
    other.write_text("<a/>")
    with pytest.raises(ManifestError, match="unknown manifest type"):
        read_manifest(other)


safe_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/"),
    min_size=1, max_size=20).filter(lambda s: s not in (".", ".."))


@given(st.lists(safe_segment, min_size=1, max_size=5).map("/".join))
def test_any_safe_key_survives_every_format(key: str) -> None:
    if len(key.encode()) > MAX_KEY_BYTES:
        return
    as_json = parse_manifest(json.dumps([key]).encode(), fmt="json")
    as_jsonl = parse_manifest((json.dumps({"key": key}) + "\n").encode(), fmt="jsonl")
    assert as_json.keys == as_jsonl.keys == (key,)


@given(st.text(max_size=300))
def test_any_text_is_either_a_manifest_of_safe_keys_or_a_manifest_error(text: str) -> None:
    try:
        manifest = parse_manifest(text.encode("utf-8", "surrogatepass"), fmt="text")
    except ManifestError:
        return
    assert all(key_problem(k) is None for k in manifest.keys)


@pytest.mark.parametrize(("fmt", "first"), [("text", b"a.jpg"), ("jsonl", b'"a.jpg"'),
                                           ("csv", b"a.jpg")])
def test_a_line_over_the_limit_is_refused_before_it_is_read_whole(fmt: str, first: bytes
                                                                  ) -> None:
    # Given a manifest whose second line is one byte over the limit
    data = first + b"\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\nb.jpg\n"
    # When / Then it is refused, naming the line
    with pytest.raises(ManifestError, match=r"line 2: longer than 65,536 bytes"):
        parse_manifest(data, fmt=fmt)
    # And a line of exactly the limit (its line break aside) is read
    assert parse_manifest(b"x" * 1000 + b"\n" + b" " * (MAX_LINE_BYTES - 1) + b"\n",
                          fmt="text").keys == ("x" * 1000,)


def test_a_json_manifest_may_declare_its_options_after_its_items() -> None:
    doc = b'{"items": ["a.jpg", {"key": "b.jpg"}], "priority": 5, "input": "s3://b/p/"}'
    manifest = parse_manifest(doc, fmt="json")
    assert (manifest.keys, manifest.priority, manifest.input) == (("a.jpg", "b.jpg"), 5,
                                                                  "s3://b/p/")


def test_keys_stream_one_at_a_time_and_a_bad_key_at_the_end_still_refuses_all() -> None:
    # Given a text manifest of many keys whose last line is hostile
    lines = [f"k{i}.jpg" for i in range(10_000)] + ["../etc/passwd"]
    stream = ManifestStream(io.BytesIO("\n".join(lines).encode()), fmt="text")
    keys = stream.keys()
    # When the first key is taken, then only the start of the file has been read
    assert next(keys) == "k0.jpg"
    assert stream.source.tell() < 100_000
    # And consuming the rest ends in a refusal naming the last line
    with pytest.raises(ManifestError, match=r"line 10001: key has a '\.\.' segment"):
        list(keys)
