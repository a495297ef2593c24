"""Inputs as they come: gzipped manifests, S3 Inventory deliveries, and --include."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import secrets
from pathlib import Path
from urllib.parse import quote_plus

import boto3
import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest

from gpufleet.config import Settings
from gpufleet.errors import ManifestError
from gpufleet.gunzip import Gunzipped
from gpufleet.index import Index
from gpufleet.manifest import ManifestStream, manifest_format, read_manifest
from gpufleet.sources import submit_source

KEYS = ["a.jpg", "folder/b c.jpg", "ünïcode/ç.png"]
VERSIONED = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate"
PARQUET_SCHEMA = ("message s3.inventory { required binary bucket (UTF8); required binary key "
                  "(UTF8); optional boolean is_latest; optional boolean is_delete_marker; }")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"GPUFLEET_HOME": str(tmp_path / "home")})


# Gzipped manifests ---------------------------------------------------------------------

@pytest.mark.parametrize("name, text", [
    ("keys.txt.gz", "\n".join(KEYS) + "\n"),
    ("keys.csv.gz", "bucket,key\n" + "".join(f"b,{quote_plus(k)}\n" for k in KEYS)),
    ("keys.jsonl.gz", "".join(json.dumps({"key": k}) + "\n" for k in KEYS)),
    ("keys.json.gz", json.dumps({"items": KEYS, "priority": 3})),
])
def test_a_gzipped_manifest_reads_as_the_plain_one(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()))
    manifest = read_manifest(path)
    assert list(manifest.keys) == KEYS
    assert manifest_format(name) == manifest_format(name.removesuffix(".gz"))


def test_a_gzip_bomb_is_refused_in_one_line_before_it_is_expanded() -> None:
    bomb = gzip.compress(b"\n" * (64 * 1024**2))  # 64 MiB of blank lines in ~64 KiB
    stream = Gunzipped(io.BytesIO(bomb), name="bomb.txt.gz", limit=1024**2)
    with pytest.raises(ManifestError, match=r"bomb.txt.gz: refused: expands to more than"):
        while stream.read(64 * 1024):
            pass


# Named, not identified by their bytes: a gzip header holds the time it was made, and two
# pytest-xdist processes must collect the same test ids.
@pytest.mark.parametrize("data", [b"not gzip at all\n", gzip.compress(b"a.jpg\n" * 1000)[:-30]],
                         ids=["not-gzip", "truncated"])
def test_a_damaged_gzip_manifest_is_refused_by_name(data: bytes) -> None:
    stream = ManifestStream(io.BytesIO(data), fmt="text", name="keys.txt.gz")
    with pytest.raises(ManifestError, match=r"^keys.txt.gz: not valid gzip"):
        list(stream.keys())


def test_an_unknown_manifest_type_names_the_types_known() -> None:
    with pytest.raises(ManifestError, match=r"keys.xml.gz: unknown manifest type; .*\.csv"):
        manifest_format("s3://b/keys.xml.gz")


# S3 Inventory ----------------------------------------------------------------------------

class Delivery:
    """An S3 Inventory delivery laid out on disk as in its destination bucket."""

    def __init__(self, root: Path, file_format: str = "CSV", schema: str = VERSIONED) -> None:
        self.root, self.file_format, self.schema = root, file_format, schema
        self.files: list[dict[str, object]] = []
        self.base = "photos/daily"

    def add(self, data: bytes, suffix: str, *, md5: str | None = None) -> None:
        key = f"{self.base}/data/part-{len(self.files)}.{suffix}"
        (self.root / key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / key).write_bytes(data)
        self.files.append({"key": key, "size": len(data),
                           "MD5checksum": md5 or hashlib.md5(data).hexdigest()})

    def manifest(self) -> Path:
        path = self.root / self.base / "2026-12-05T01-00Z" / "manifest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "sourceBucket": "photos", "destinationBucket": "arn:aws:s3:::inventories",
            "version": "2016-11-30", "creationTimestamp": "1764896400000",
            "fileFormat": self.file_format, "fileSchema": self.schema, "files": self.files}))
        return path


def _csv_gz(rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return gzip.compress(text.getvalue().encode())


def _versioned_rows() -> list[list[str]]:
    """Every version of three objects: an old one, a deleted one, and current ones."""
    rows = [["photos", quote_plus(k), "v2", "true", "false", "10", "2026-12-04"] for k in KEYS]
    rows.append(["photos", "a.jpg", "v1", "false", "false", "9", "2026-12-01"])  # old version
    rows.append(["photos", "gone.jpg", "v3", "true", "true", "", "2026-12-03"])  # deleted
    return rows


def test_a_csv_inventory_becomes_a_job_of_its_current_objects(
        tmp_path: Path, settings: Settings) -> None:
    delivery = Delivery(tmp_path / "inventories")
    rows = _versioned_rows()
    delivery.add(_csv_gz(rows[:2]), "csv.gz")
    delivery.add(_csv_gz(rows[2:]), "csv.gz")
    job = submit_source(settings, Index(settings.db), delivery.manifest(),
                        model="synthetic?item_ms=0")
    assert job.counts.total == len(KEYS)
    assert job.input == "s3://photos/"  # where the listed objects live
    assert sorted(i.key for i in Index(settings.db).results(job.id)) == sorted(KEYS)


@pytest.mark.parametrize("file_format", ["Parquet", "ORC"])
def test_a_columnar_inventory_becomes_a_job_of_its_current_objects(
        tmp_path: Path, settings: Settings, file_format: str) -> None:
    table = pa.table({
        "bucket": ["photos"] * 5, "key": [*KEYS, "a.jpg", "gone.jpg"],
        "is_latest": [True, True, True, False, True],
        "is_delete_marker": [False, False, False, False, True]})
    data = io.BytesIO()
    (pq.write_table if file_format == "Parquet" else orc.write_table)(table, data)
    delivery = Delivery(tmp_path / "inventories", file_format, PARQUET_SCHEMA)
    delivery.add(data.getvalue(), file_format.lower())
    job = submit_source(settings, Index(settings.db), delivery.manifest(),
                        model="synthetic?item_ms=0", input="file:///elsewhere/")
    assert job.counts.total == len(KEYS) and job.input == "file:///elsewhere/"


@pytest.mark.parametrize("breakage, message", [
    ("md5", r"part-0.csv.gz: refused: its MD5 does not match"),
    ("schema", r"fileSchema has no Key column"),
    ("columns", r"part-0.csv.gz line 1: 2 columns"),
    ("format", r"S3 Inventory format 'Avro'"),
])
def test_a_bad_inventory_is_refused_whole_with_one_line(
        tmp_path: Path, settings: Settings, breakage: str, message: str) -> None:
    delivery = Delivery(tmp_path / "inventories",
                        file_format="Avro" if breakage == "format" else "CSV",
                        schema="Bucket, Size" if breakage == "schema" else VERSIONED)
    rows = [["photos", "x.jpg"]] if breakage == "columns" else _versioned_rows()
    delivery.add(_csv_gz(rows), "csv.gz", md5="0" * 32 if breakage == "md5" else None)
    index = Index(settings.db)
    with pytest.raises(ManifestError, match=message):
        submit_source(settings, index, delivery.manifest(), model="synthetic?item_ms=0")
    assert index.jobs() == []  # nothing enqueued


def test_a_manifest_json_that_is_not_an_inventory_is_an_ordinary_manifest(
        tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"items": KEYS, "files": ["not", "an", "inventory"]}))
    assert list(read_manifest(path).keys) == KEYS


# --include -----------------------------------------------------------------------------

def test_include_keeps_matching_names_in_any_case_and_leaves_the_rest_out(
        tmp_path: Path, settings: Settings) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.jpg", "B.JPG", "sub/c.jpeg", "notes.txt", "sub/d.png"):
        (folder / name).write_bytes(b"x")
    index = Index(settings.db)
    job = submit_source(settings, index, folder, include=["*.jpg", "*.jpeg"])
    assert sorted(i.key for i in index.results(job.id)) == ["B.JPG", "a.jpg", "sub/c.jpeg"]
    with pytest.raises(ManifestError, match=r"none of 5 name\(s\) matches --include \*.gif"):
        submit_source(settings, index, folder, include=["*.gif"])
    (tmp_path / "m.txt").write_text("a.jpg\n")
    with pytest.raises(ManifestError, match="--include narrows a folder"):
        submit_source(settings, index, tmp_path / "m.txt", include=["*.jpg"])


def test_an_inventory_in_s3_is_submitted_by_its_manifest_object(
        aws_env: object, settings: Settings) -> None:
    """On moto over HTTP: the data file is read from the destination bucket."""
    s3 = boto3.client("s3")
    destination = "inventories-" + secrets.token_hex(4)
    s3.create_bucket(Bucket=destination)
    data = _csv_gz(_versioned_rows())
    part = "photos/daily/data/0a1b2c3d-0000-4000-8000-000000000000.csv.gz"
    s3.put_object(Bucket=destination, Key=part, Body=data)
    manifest_key = "photos/daily/2026-12-05T01-00Z/manifest.json"
    s3.put_object(Bucket=destination, Key=manifest_key, Body=json.dumps({
        "sourceBucket": "photos", "destinationBucket": f"arn:aws:s3:::{destination}",
        "fileFormat": "CSV", "fileSchema": VERSIONED,
        "files": [{"key": part, "size": len(data),
                   "MD5checksum": hashlib.md5(data).hexdigest()}]}).encode())
    index = Index(settings.db)
    job = submit_source(settings, index, f"s3://{destination}/{manifest_key}",
                        model="synthetic?item_ms=0")
    assert job.input == "s3://photos/"
    assert sorted(i.key for i in index.results(job.id)) == sorted(KEYS)
