"""Manifests: the list of object keys a job processes.

Formats, picked by file suffix: JSON (a list of keys, a list of ``{"key": ...}``,
or ``{"items": [...], "input": LOCATION}``), JSON Lines (a key string or an
object with "key" per line), CSV (``bucket,key`` as S3 Inventory and S3 Batch
Operations write it, URL-encoded keys, header optional; or one key per row),
and plain text (one key per line), each also gzipped (``.csv.gz``); and an S3
Inventory delivery's ``manifest.json``, whose data files are read through the
caller's ``read_file`` (inventory.py). Every key is validated; duplicates are
collapsed; a bad manifest is refused as a whole, naming the line or item.

Manifests are read as a stream (``open_manifest``): a line at a time, a JSON
document with ijson, so memory does not grow with the manifest, and a line
longer than MAX_LINE_BYTES is refused instead of read. Whoever consumes the
keys (one database transaction, see ``Index.create_job``) collapses the
duplicates, and an error raised at the end (a bad key on the last line)
undoes what was consumed.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast
from urllib.parse import unquote_plus

import ijson

from gpufleet.errors import ManifestError
from gpufleet.gunzip import Gunzipped
from gpufleet.inventory import ReadFile, inventory_keys, is_inventory, parse_inventory
from gpufleet.jsonsafe import MAX_DEPTH, JsonRefused, loads
from gpufleet.keys import key_problem

MAX_DEADLINE_S = 30 * 86400  # a deadline further off than this is a mistake
MAX_PRIORITY = 1000
MAX_LINE_BYTES = 64 * 1024  # a key is at most 1 KiB: room for JSON escapes and other fields
FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "text"}
MAX_INVENTORY_BYTES = 64 * 1024**2  # an S3 Inventory manifest.json: its list of data files
_SHOWN_PROBLEMS = 5


@dataclass(frozen=True, slots=True)
class Manifest:
    """A whole manifest in memory: for a client that sends its keys on (the CLI through
    the API). Jobs read manifests as a stream instead (open_manifest)."""

    keys: tuple[str, ...]
    input: str | None = None  # where the keys live, when the manifest says so
    duplicates: int = 0
    deadline_s: float | None = None  # JSON manifests: {"deadline_s": 1800, ...}
    priority: int | None = None  # JSON manifests: {"priority": 5, ...}
    preprocess: str | None = None  # JSON manifests: {"preprocess": "exif,grayscale", ...}


def manifest_format(name: str) -> str:
    """The format a manifest's file name says (``keys.csv.gz``: csv, gzipped)."""
    stem = name.lower().removesuffix(".gz")
    fmt = FORMATS.get("." + stem.rsplit(".", 1)[-1]) if "." in stem else None
    if fmt is None:
        raise ManifestError(f"{name.rsplit('/', 1)[-1]}: unknown manifest type; expected one "
                            f"of {', '.join(FORMATS)}, each possibly gzipped (.gz)")
    return fmt


def names_a_manifest(uri: str) -> bool:
    """Whether a path or URI's last part is a manifest's name (else: a folder or prefix)."""
    if uri.endswith("/"):
        return False
    try:
        manifest_format(uri.rsplit("/", 1)[-1])
    except ManifestError:
        return False
    return True


def open_manifest(path: Path, *, read_file: ReadFile | None = None) -> ManifestStream:
    """A manifest file as a stream; its format follows its suffix."""
    fmt = manifest_format(path.name)
    try:
        source = path.open("rb")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return ManifestStream(source, fmt=fmt, name=path.name, read_file=read_file)
    except BaseException:
        source.close()
        raise


def read_manifest(path: Path) -> Manifest:
    with open_manifest(path) as stream:
        return _whole(stream)


def parse_manifest(data: bytes, *, fmt: str, name: str = "manifest") -> Manifest:
    return _whole(ManifestStream(io.BytesIO(data), fmt=fmt, name=name))


def _whole(stream: ManifestStream) -> Manifest:
    keys = tuple(dict.fromkeys(stream.keys()))
    return Manifest(keys, stream.input, stream.seen - len(keys), deadline_s=stream.deadline_s,
                    priority=stream.priority, preprocess=stream.preprocess)


class ManifestStream:
    """A manifest read as a stream: its declared options at once, its keys by iterating
    keys() once, validated and in order (duplicates left to the consumer). keys() raises
    ManifestError after the last entry if a key was bad (naming the first few) or there was
    none, and at once on a line it cannot read."""

    def __init__(self, source: IO[bytes], *, fmt: str, name: str = "manifest",
                 read_file: ReadFile | None = None) -> None:
        if fmt not in _PARSERS:
            raise ManifestError(f"{name}: unknown manifest format {fmt!r}")
        if name.lower().endswith(".gz"):
            source = cast(IO[bytes], Gunzipped(source, name=name))
        self.source, self.fmt, self.name, self.read_file = source, fmt, name, read_file
        self.input: str | None = None  # where the keys live, when the manifest says so
        self.deadline_s: float | None = None  # JSON manifests: {"deadline_s": 1800, ...}
        self.priority: int | None = None  # JSON manifests: {"priority": 5, ...}
        self.preprocess: str | None = None  # JSON manifests: a chain (preprocess/chain.py)
        self.seen = 0  # entries read, duplicates included
        self.items_prefix = _json_options(self) if fmt == "json" else ""
        if self.items_prefix == _INVENTORY:
            self._read_inventory()

    def _read_inventory(self) -> None:
        data = self.source.read(MAX_INVENTORY_BYTES + 1)
        if len(data) > MAX_INVENTORY_BYTES:
            raise ManifestError(f"{self.name}: an S3 Inventory manifest over "
                                f"{MAX_INVENTORY_BYTES:,} bytes")
        try:
            self.inventory = parse_inventory(loads(data), name=self.name)
        except ValueError as exc:  # checked by the first pass; a file changed meanwhile
            raise ManifestError(f"{self.name}: invalid JSON: {_first_line(exc)}") from None
        if self.read_file is None:
            raise ManifestError(f"{self.name}: an S3 Inventory manifest, but its data files "
                                "cannot be read from here; submit it from its bucket")
        self.fmt, self.input = "inventory", self.inventory.input

    def keys(self) -> Iterator[str]:
        shown: list[str] = []
        problems = 0
        self.seen = 0
        for where, key in _PARSERS[self.fmt](self):
            self.seen += 1
            problem = "key is not a string" if not isinstance(key, str) else key_problem(key)
            if problem:
                problems += 1
                if len(shown) < _SHOWN_PROBLEMS:
                    shown.append(f"{where}: {problem}: {_show(key)}")
            elif not problems:  # after a problem nothing will be enqueued: only count them
                yield key
        if problems:
            more = problems - len(shown)
            text = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
            raise ManifestError(f"{self.name} refused, nothing enqueued: {text}")
        if not self.seen:
            raise ManifestError(f"{self.name} lists no items")

    def lines(self) -> Iterator[tuple[int, str]]:
        """(number, text) of each line, without its line break; refuses long lines."""
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        offset = 0
        for n, raw in enumerate(iter(lambda: self.source.readline(MAX_LINE_BYTES + 1), b""), 1):
            if len(raw) > MAX_LINE_BYTES:
                raise ManifestError(f"{self.name} line {n}: longer than {MAX_LINE_BYTES:,} "
                                    "bytes")
            try:
                text = decoder.decode(raw)
            except UnicodeDecodeError as exc:
                raise ManifestError(f"{self.name}: not UTF-8 text (byte {offset + exc.start})"
                                    ) from None
            offset += len(raw)
            yield n, text.removesuffix("\n").removesuffix("\r")

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> ManifestStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _show(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


def _item_key(item: Any) -> Any:
    return item.get("key") if isinstance(item, dict) else item


def _json_options(stream: ManifestStream) -> str:
    """Read a JSON manifest's top level once (its options; the items are only skipped over)
    and return the ijson prefix of its items."""
    declared: dict[str, Any] = {}
    top = items = key = None
    depth = 0
    top_keys: set[str] = set()
    try:
        # basic_parse: events without ijson's prefixes, which cost O(depth) each to build.
        # Nesting is bounded here, on the flat event stream, before anything builds
        # objects from it: a manifest nested 100,000 deep must not reach a recursion.
        for event, value in ijson.basic_parse(stream.source, use_float=True):
            if top is None:
                top = event
            if event in ("start_map", "start_array"):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ManifestError(f"{stream.name}: refused: JSON nested deeper than "
                                        f"{MAX_DEPTH} levels")
                if depth == 2 and key == "items" and items is None:
                    items = event
            elif event in ("end_map", "end_array"):
                depth -= 1
            elif depth == 1 and event == "map_key":
                key = value
                top_keys.add(value)
            elif depth == 1 and key in ("input", "deadline_s", "priority", "preprocess"):
                declared[key] = value
    except (ijson.JSONError, ValueError) as exc:  # ValueError: a number of 5,000 digits
        raise ManifestError(f"{stream.name}: invalid JSON: {_first_line(exc)}") from None
    finally:
        stream.source.seek(0)
    if top == "start_array":
        return "item"
    if top == "start_map" and is_inventory(top_keys):
        return _INVENTORY
    if top != "start_map" or items != "start_array":
        raise ManifestError(f'{stream.name}: expected a list of keys or {{"items": [...]}}')
    if "input" in declared:
        if not isinstance(declared["input"], str) or not declared["input"]:
            raise ManifestError(f'{stream.name}: "input" must be a location string')
        stream.input = declared["input"]
    deadline, priority = declared.get("deadline_s"), declared.get("priority")
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) \
                or not 0 < deadline <= MAX_DEADLINE_S:
            raise ManifestError(f'{stream.name}: "deadline_s" must be a number of seconds, '
                                f"more than 0 and at most {MAX_DEADLINE_S:,} (30 days)")
        stream.deadline_s = float(deadline)
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int) \
                or not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
            raise ManifestError(f'{stream.name}: "priority" must be an integer from '
                                f"{-MAX_PRIORITY} to {MAX_PRIORITY}")
        stream.priority = priority
    if "preprocess" in declared:  # checked as a chain where the job is made (jobs.py)
        if not isinstance(declared["preprocess"], str):
            raise ManifestError(f'{stream.name}: "preprocess" must be a chain of steps, '
                                'e.g. "exif,min-size=64"')
        stream.preprocess = declared["preprocess"]
    return "items.item"


def _json(stream: ManifestStream) -> Iterator[tuple[str, Any]]:
    try:
        for i, item in enumerate(ijson.items(stream.source, stream.items_prefix,
                                             use_float=True)):
            yield f"item {i}", _item_key(item)
    except (ijson.JSONError, ValueError) as exc:  # checked by the first pass; a file changed
        raise ManifestError(f"{stream.name}: invalid JSON: {_first_line(exc)}") from None


def _jsonl(stream: ManifestStream) -> Iterator[tuple[str, Any]]:
    for n, line in stream.lines():
        if not line.strip():
            continue
        try:
            item = loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{stream.name} line {n}: invalid JSON: {exc.msg}") from None
        except JsonRefused as exc:
            raise ManifestError(f"{stream.name} line {n}: refused: {exc}") from None
        yield f"line {n}", _item_key(item)


def _csv(stream: ManifestStream) -> Iterator[tuple[str, Any]]:
    rows = csv.reader(line for _, line in stream.lines())
    try:
        for row in rows:
            n = rows.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if n == 1 and [c.strip().lower() for c in row[:2]] in (["bucket", "key"], ["key"]):
                continue  # header
            # S3 Inventory and Batch Operations write bucket,key[,version...], URL-encoded.
            yield f"line {n}", unquote_plus(row[1] if len(row) >= 2 else row[0])
    except csv.Error as exc:
        raise ManifestError(f"{stream.name}: invalid CSV: {exc}") from None


def _text(stream: ManifestStream) -> Iterator[tuple[str, Any]]:
    for n, line in stream.lines():
        if line.strip():
            yield f"line {n}", line


def _inventory(stream: ManifestStream) -> Iterator[tuple[str, Any]]:
    assert stream.read_file is not None
    return inventory_keys(stream.inventory, stream.read_file)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


_INVENTORY = "<inventory>"  # not an ijson prefix: the JSON is an S3 Inventory manifest
_PARSERS = {"json": _json, "jsonl": _jsonl, "csv": _csv, "text": _text, "inventory": _inventory}
