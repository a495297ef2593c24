"""Exports to an s3:// prefix (moto in server mode): each part is uploaded from its
spooled file, and reads back whole."""

from __future__ import annotations

import io
import json
import secrets
import threading
from pathlib import Path

import boto3
import pyarrow.parquet as pq

from gpufleet.export import export_job
from gpufleet.store import open_location
from gpufleet.store.local import LocalStore
from gpufleet.worker.observer import Observer
from tests.conftest import Home
from tests.pipeline_jobs import observed_pipeline, submit_files
from tests.servers import MotoServer


def test_a_job_exports_to_an_s3_prefix_in_parts(home: Home, aws_env: MotoServer) -> None:
    # Given a finished job and a bucket
    job_id, _ = submit_files(home, items=12, missing=1)
    observed_pipeline(home, Observer()).run(stop=threading.Event(), max_idle_s=0.5)
    bucket = "export-" + secrets.token_hex(4)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    # When it is exported there as Parquet and as JSONL, 5 rows a part
    location = open_location(f"s3://{bucket}/exports/", settings=home.settings)
    parquet = export_job(home.index(), job_id, location, fmt="parquet", part_rows=5)
    jsonl = export_job(home.index(), job_id, location, fmt="jsonl", part_rows=5)
    # Then each is three objects under the prefix that read back as every item, in order
    assert parquet == [f"s3://{bucket}/exports/{job_id}-{n:05d}.parquet" for n in range(3)]
    assert len(jsonl) == 3

    def body(uri: str) -> bytes:
        data: bytes = s3.get_object(Bucket=bucket, Key=uri.split("/", 3)[3])["Body"].read()
        return data

    keys = [k for uri in parquet
            for k in pq.read_table(io.BytesIO(body(uri))).column("key").to_pylist()]
    assert keys == [i.key for i in home.index().iter_results(job_id)]
    assert [json.loads(line)["key"] for uri in jsonl
            for line in body(uri).decode().splitlines()] == keys
    head = s3.head_object(Bucket=bucket, Key=f"exports/{job_id}-00000.parquet")
    assert head["ContentType"] == "application/vnd.apache.parquet"


def test_a_local_store_writes_a_file_whole_and_atomically(tmp_path: Path) -> None:
    # Given a local file
    source = tmp_path / "part.bin"
    source.write_bytes(b"x" * 300_000)
    store = LocalStore(tmp_path / "bucket")
    # When it is put twice under a key in a new folder
    store.put_file("a/b/part.bin", source)
    store.put_file("a/b/part.bin", source)
    # Then the object is the file, and no temporary file is left
    assert store.get("a/b/part.bin") == source.read_bytes()
    assert list(store.list("a/")) == ["a/b/part.bin"]
