"""S3 Inventory deliveries as manifests: ``manifest.json`` and the data files it lists.

S3 Inventory writes, per run, a ``manifest.json`` naming the source bucket, the
format (CSV, Parquet or ORC), the columns (``fileSchema``) and the data files
(``files``: key, size, MD5) in the destination bucket. CSV files are gzipped,
without a header, their keys URL-encoded; Parquet and ORC columns are named
``bucket``, ``key``, ``is_latest``, ``is_delete_marker``. A versioned bucket's
inventory lists every version: only the latest, and no delete marker, is an item.

Each data file is checked against its MD5 before a key of it is used, and one
with the wrong columns is refused by name, so a job is made from a whole,
intact inventory or not at all. Parquet and ORC need pyarrow (the ``inventory``
extra); CSV needs nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from gpufleet.errors import ManifestError
from gpufleet.gunzip import Gunzipped

INVENTORY_NAME = "manifest.json"  # what S3 Inventory calls it, always
MAX_FILE_BYTES = 1024**3  # one data file, held in memory while its keys are read
_FORMATS = ("CSV", "Parquet", "ORC")
_COLUMNS = {"key": "Key", "is_latest": "IsLatest", "is_delete_marker": "IsDeleteMarker"}

# (destination bucket, key) -> the data file's bytes, at most max_bytes
ReadFile = Callable[[str, str], bytes]


# What else a delivery writes beside manifest.json: data files named by UUID, the
# manifest's checksum, and Hive symlink files. An inbox watching the destination takes
# none of them for a manifest of its own.
_DELIVERY_PARTS = re.compile(
    r"(^|/)(data/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\.(csv\.gz|parquet|orc)"
    r"|manifest\.checksum|hive/dt=[^/]+/symlink\.txt)$")


def is_inventory(top_level_keys: set[str]) -> bool:
    return {"sourceBucket", "fileFormat", "fileSchema", "files"} <= top_level_keys


def is_inventory_part(key: str) -> bool:
    """Whether key is one of an S3 Inventory delivery's files other than its manifest."""
    return _DELIVERY_PARTS.search(key) is not None


@dataclass(frozen=True, slots=True)
class DataFile:
    key: str
    md5: str | None


@dataclass(frozen=True, slots=True)
class Inventory:
    source_bucket: str
    destination_bucket: str
    file_format: str  # CSV, Parquet, ORC
    schema: str
    files: tuple[DataFile, ...]

    @property
    def input(self) -> str:
        """Where the listed objects live: the inventoried bucket."""
        return f"s3://{self.source_bucket}/"


def parse_inventory(doc: Any, *, name: str) -> Inventory:
    """The inventory a manifest.json describes; ManifestError naming what is wrong."""
    def text(field: str) -> str:
        value = doc.get(field)
        if not isinstance(value, str) or not value:
            raise ManifestError(f"{name}: S3 Inventory manifest without a {field!r}")
        return value

    if not isinstance(doc, Mapping):
        raise ManifestError(f"{name}: an S3 Inventory manifest must be a JSON object")
    file_format = text("fileFormat")
    if file_format not in _FORMATS:
        raise ManifestError(f"{name}: S3 Inventory format {file_format!r}: expected one of "
                            + ", ".join(_FORMATS))
    files = doc.get("files")
    if not isinstance(files, list) or not files:
        raise ManifestError(f"{name}: S3 Inventory manifest lists no data files")
    listed = []
    for i, entry in enumerate(files):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str):
            raise ManifestError(f"{name}: data file {i} has no key")
        md5 = entry.get("MD5checksum")
        listed.append(DataFile(entry["key"], md5.lower() if isinstance(md5, str) else None))
    destination = doc.get("destinationBucket", "")
    return Inventory(
        source_bucket=text("sourceBucket"), file_format=file_format, schema=text("fileSchema"),
        destination_bucket=destination.removeprefix("arn:aws:s3:::")
        if isinstance(destination, str) else "",
        files=tuple(listed))


def inventory_keys(inventory: Inventory, read_file: ReadFile) -> Iterator[tuple[str, Any]]:
    """(where, key) of every current object the inventory lists, file after file."""
    read = {"CSV": _csv_keys, "Parquet": _parquet_keys, "ORC": _orc_keys}[inventory.file_format]
    for data_file in inventory.files:
        data = read_file(inventory.destination_bucket, data_file.key)
        if data_file.md5 and hashlib.md5(data, usedforsecurity=False).hexdigest() != data_file.md5:
            raise ManifestError(f"{data_file.key}: refused: its MD5 does not match the "
                                "inventory manifest's (damaged or replaced)")
        yield from read(inventory, data_file.key, data)


def _csv_keys(inventory: Inventory, name: str, data: bytes) -> Iterator[tuple[str, Any]]:
    columns = [c.strip() for c in inventory.schema.split(",")]
    if "Key" not in columns:
        raise ManifestError(f"{name}: refused: the inventory's fileSchema has no Key column")
    where = {field: columns.index(column) if column in columns else None
             for field, column in _COLUMNS.items()}
    source = io.BufferedReader(Gunzipped(io.BytesIO(data), name=name))
    text = io.TextIOWrapper(source, encoding="utf-8", newline="")
    rows = csv.reader(text)
    try:
        for row in rows:
            if not row:
                continue
            if len(row) != len(columns):
                raise ManifestError(f"{name} line {rows.line_num}: {len(row)} columns, the "
                                    f"inventory's fileSchema names {len(columns)}")
            if _current(*(row[i] if i is not None else None for i in
                          (where["is_latest"], where["is_delete_marker"]))):
                yield f"{name} line {rows.line_num}", unquote_plus(row[where["key"] or 0])
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ManifestError(f"{name}: not a CSV inventory file: {exc}") from None


def _current(is_latest: str | bool | None, is_delete_marker: str | bool | None) -> bool:
    """Only the latest version of an object that is not deleted is an item."""
    def true(value: str | bool | None) -> bool:
        return value is True or (isinstance(value, str) and value.strip().lower() == "true")
    return (is_latest is None or is_latest == "" or true(is_latest)) and not true(
        is_delete_marker)


def _parquet_keys(inventory: Inventory, name: str, data: bytes) -> Iterator[tuple[str, Any]]:
    parquet = _pyarrow("parquet")
    try:
        table = parquet.ParquetFile(io.BytesIO(data))
        names = set(table.schema_arrow.names)
        batches = table.iter_batches(columns=_present(names, name))
        yield from _table_keys(name, batches)
    except ManifestError:
        raise
    except Exception as exc:  # pyarrow's errors: ArrowInvalid, OSError
        raise ManifestError(f"{name}: not a Parquet inventory file: {exc}") from None


def _orc_keys(inventory: Inventory, name: str, data: bytes) -> Iterator[tuple[str, Any]]:
    orc = _pyarrow("orc")
    try:
        table = orc.ORCFile(io.BytesIO(data))
        columns = _present(set(table.schema.names), name)
        stripes = (table.read_stripe(i, columns=columns) for i in range(table.nstripes))
        yield from _table_keys(name, stripes)
    except ManifestError:
        raise
    except Exception as exc:
        raise ManifestError(f"{name}: not an ORC inventory file: {exc}") from None


def _present(names: set[str], name: str) -> list[str]:
    if "key" not in names:
        raise ManifestError(f"{name}: refused: the inventory file has no key column")
    return [column for column in _COLUMNS if column in names]


def _table_keys(name: str, batches: Iterator[Any]) -> Iterator[tuple[str, Any]]:
    row = 0
    for batch in batches:
        columns = batch.to_pydict()
        keys = columns["key"]
        latest = columns.get("is_latest", [None] * len(keys))
        deleted = columns.get("is_delete_marker", [None] * len(keys))
        for key, is_latest, is_delete_marker in zip(keys, latest, deleted, strict=True):
            row += 1
            if _current(is_latest, is_delete_marker):
                yield f"{name} row {row}", key


def _pyarrow(module: str) -> Any:
    try:
        return __import__(f"pyarrow.{module}", fromlist=[module])
    except ImportError:
        raise ManifestError("reading a Parquet or ORC inventory needs pyarrow: pip install "
                            "'gpufleet[inventory]'") from None
