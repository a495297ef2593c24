"""Manifests: the list of object keys a job processes.

Formats, picked by file suffix: JSON (a list of keys, a list of ``{"key": ...}``,
or ``{"items": [...], "input": LOCATION}``), JSON Lines (a key string or an
object with "key" per line), CSV (``bucket,key`` as S3 Inventory and S3 Batch
Operations write it, URL-encoded keys, header optional; or one key per row),
and plain text (one key per line). Every key is validated; duplicates are
collapsed; a bad manifest is refused as a whole, naming the line or item.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from gpufleet.errors import ManifestError
from gpufleet.jsonsafe import JsonRefused, loads

MAX_KEY_BYTES = 1024
MAX_DEADLINE_S = 30 * 86400  # a deadline further off than this is a mistake
MAX_PRIORITY = 1000
FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "text"}
_SHOWN_PROBLEMS = 5


@dataclass(frozen=True, slots=True)
class Manifest:
    keys: tuple[str, ...]
    input: str | None = None  # where the keys live, when the manifest says so
    duplicates: int = 0
    deadline_s: float | None = None  # JSON manifests: {"deadline_s": 1800, ...}
    priority: int | None = None  # JSON manifests: {"priority": 5, ...}


def key_problem(key: str) -> str | None:
    """Why key is not a safe object key, or None if it is."""
    if not key:
        return "empty key"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"key longer than {MAX_KEY_BYTES} UTF-8 bytes"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return "key contains a NUL or control character"
    if key.startswith("/"):
        return "key starts with '/'"
    if key.endswith("/"):
        return "key ends with '/' (a folder, not an object)"
    for segment in key.split("/"):
        if segment in ("..", "."):
            return f"key has a {segment!r} segment"
        if not segment:
            return "key has an empty segment ('//')"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return "key is not valid UTF-8"
    return None


def read_manifest(path: Path) -> Manifest:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ManifestError(f"{path.name}: unknown manifest type; expected one of "
                            + ", ".join(FORMATS))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_manifest(data, fmt=fmt, name=path.name)


def parse_manifest(data: bytes, *, fmt: str, name: str = "manifest") -> Manifest:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    parsers = {"json": _json, "jsonl": _jsonl, "csv": _csv, "text": _text}
    if fmt not in parsers:
        raise ManifestError(f"{name}: unknown manifest format {fmt!r}")
    declared: dict[str, Any] = {}
    entries = list(parsers[fmt](text, name, declared))
    return _collect(entries, name, declared)


def _collect(entries: Iterable[tuple[str, Any]], name: str, declared: dict[str, Any]
             ) -> Manifest:
    keys: dict[str, None] = {}
    problems: list[str] = []
    seen = 0
    for where, key in entries:
        seen += 1
        problem = "key is not a string" if not isinstance(key, str) else key_problem(key)
        if problem:
            problems.append(f"{where}: {problem}: {_show(key)}")
        else:
            keys[key] = None
    if problems:
        more = len(problems) - _SHOWN_PROBLEMS
        text = "; ".join(problems[:_SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        raise ManifestError(f"{name} refused, nothing enqueued: {text}")
    if not keys:
        raise ManifestError(f"{name} lists no items")
    return Manifest(tuple(keys), declared.get("input"), seen - len(keys),
                    deadline_s=declared.get("deadline_s"), priority=declared.get("priority"))


def _show(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


def _item_key(item: Any) -> Any:
    return item.get("key") if isinstance(item, dict) else item


def _json(text: str, name: str, declared: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    try:
        doc = loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{name} line {exc.lineno}: invalid JSON: {exc.msg}") from None
    except JsonRefused as exc:
        raise ManifestError(f"{name}: refused: {exc}") from None
    if isinstance(doc, dict):
        if not isinstance(doc.get("items"), list):
            raise ManifestError(f'{name}: expected a list of keys or {{"items": [...]}}')
        if "input" in doc:
            if not isinstance(doc["input"], str) or not doc["input"]:
                raise ManifestError(f'{name}: "input" must be a location string')
            declared["input"] = doc["input"]
        _options(doc, name, declared)
        doc = doc["items"]
    if not isinstance(doc, list):
        raise ManifestError(f'{name}: expected a list of keys or {{"items": [...]}}')
    for i, item in enumerate(doc):
        yield f"item {i}", _item_key(item)


def _options(doc: dict[str, Any], name: str, declared: dict[str, Any]) -> None:
    deadline, priority = doc.get("deadline_s"), doc.get("priority")
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) \
                or not 0 < deadline <= MAX_DEADLINE_S:
            raise ManifestError(f'{name}: "deadline_s" must be a number of seconds, more than '
                                f"0 and at most {MAX_DEADLINE_S:,} (30 days)")
        declared["deadline_s"] = float(deadline)
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int) \
                or not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
            raise ManifestError(f'{name}: "priority" must be an integer from {-MAX_PRIORITY} '
                                f"to {MAX_PRIORITY}")
        declared["priority"] = priority


def _jsonl(text: str, name: str, _: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{name} line {n}: invalid JSON: {exc.msg}") from None
        except JsonRefused as exc:
            raise ManifestError(f"{name} line {n}: refused: {exc}") from None
        yield f"line {n}", _item_key(item)


def _csv(text: str, name: str, _: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ManifestError(f"{name}: invalid CSV: {exc}") from None
    for n, row in enumerate(rows, 1):
        if not row or not any(cell.strip() for cell in row):
            continue
        if n == 1 and [c.strip().lower() for c in row[:2]] in (["bucket", "key"], ["key"]):
            continue  # header
        # S3 Inventory and Batch Operations write bucket,key[,version...] with URL-encoded keys.
        yield f"line {n}", unquote_plus(row[1] if len(row) >= 2 else row[0])


def _text(text: str, name: str, _: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for n, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if line.strip():
            yield f"line {n}", line
