"""The scale-out backends under the real CLI and real worker processes: S3 input and output
(moto in server mode, over HTTP), a PostgreSQL index set up by `gpufleet init`, a Redis cache.
"""

from __future__ import annotations

import json
import secrets

import boto3
import pytest

from gpufleet.index.migrate import HEAD
from tests.conftest import Home
from tests.servers import MotoServer, PostgresServer, RedisServer, free_port

MODEL = "synthetic?item_ms=1"


@pytest.fixture
def s3_home(home: Home, aws_env: MotoServer) -> Home:
    """A home whose processes reach moto through the standard AWS variables."""
    home.env.update(aws_env.env)
    return home


def _bucket_with_objects(count: int) -> tuple[str, list[str]]:
    bucket = "photos-" + secrets.token_hex(4)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    keys = [f"batch/{i:04d}.bin" for i in range(count)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=f"in/{key}", Body=f"object {key}".encode())
    # A console "folder" and a hidden file: not items, as in a local folder
    s3.put_object(Bucket=bucket, Key="in/batch/", Body=b"")
    s3.put_object(Bucket=bucket, Key="in/.DS_Store", Body=b"x")
    return bucket, keys


def _result_objects(bucket: str, prefix: str) -> dict[str, dict[str, object]]:
    s3 = boto3.client("s3")
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", ()):
            body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            found[entry["Key"][len(prefix):]] = json.loads(body)
    return found


def test_a_job_reads_an_s3_prefix_and_writes_results_to_s3(s3_home: Home) -> None:
    # Given 120 objects under an S3 prefix (and a folder marker and a hidden file)
    bucket, keys = _bucket_with_objects(120)
    # When the prefix is submitted with an S3 output, and local workers run it
    summary = s3_home.json("submit", f"s3://{bucket}/in/", "--output",
                           f"s3://{bucket}/results/", "--model", MODEL, "--wait",
                           "--workers", "2")
    # Then every object was one item, and all of them are done
    assert (summary["state"], summary["total"], summary["done"]) == ("succeeded", 120, 120)
    job = summary["job"]
    # And each has exactly one result object under <output>/<job>/<key>.json
    results = _result_objects(bucket, f"results/{job}/")
    assert sorted(results) == sorted(f"{k}.json" for k in keys)
    assert all(r["status"] == "done" and r["tags"] for r in results.values())
    # And the index knows where the job read and wrote
    status = s3_home.json("status", job)
    assert status["done"] == 120


def test_a_manifest_may_name_an_s3_input(s3_home: Home) -> None:
    # Given a manifest of keys in S3, one of which does not exist
    bucket, keys = _bucket_with_objects(10)
    manifest = s3_home.path / "keys.txt"
    manifest.write_text("\n".join([*keys, "batch/missing.bin"]) + "\n")
    # When it is submitted with --input s3://...
    summary = s3_home.json("submit", manifest, "--input", f"s3://{bucket}/in/", "--output",
                           f"s3://{bucket}/out/", "--model", MODEL, "--wait",
                           check=False)  # partial: --wait exits 1
    # Then the ten objects are done and the missing one failed with its reason
    assert (summary["done"], summary["failed"]) == (10, 1)
    rows = [json.loads(line) for line in
            s3_home.run("results", summary["job"], "-f", "jsonl").stdout.splitlines()]
    [missing] = [r for r in rows if r["status"] == "failed"]
    assert missing["key"] == "batch/missing.bin"
    assert "no such object" in missing["error"]


def test_submitting_an_empty_or_unknown_s3_location_is_a_clear_error(s3_home: Home) -> None:
    bucket, _ = _bucket_with_objects(1)
    result = s3_home.run("submit", f"s3://{bucket}/nothing-here/", "--model", MODEL,
                         check=False)
    assert result.returncode == 1
    assert "no objects to process" in result.stderr
    result = s3_home.run("submit", "s3://no-such-bucket-x1/in/", "--model", MODEL, check=False)
    assert result.returncode == 1
    assert "no such bucket" in result.stderr
    assert "Traceback" not in result.stderr


def test_init_then_a_job_on_postgres_s3_and_redis(s3_home: Home, postgres_server: PostgresServer,
                                                   redis_server: RedisServer) -> None:
    # Given scale-out settings: PostgreSQL index, S3 input and output, Redis cache
    bucket, keys = _bucket_with_objects(40)
    db = postgres_server.create_database()
    s3_home.env.update(GPUFLEET_DB=db, GPUFLEET_INPUT=f"s3://{bucket}/uploads/",
                       GPUFLEET_OUTPUT=f"s3://{bucket}/results/",
                       GPUFLEET_CACHE=redis_server.url.replace("/0", "/1"),
                       GPUFLEET_SSE="AES256")
    try:
        # When a command needs the index before `gpufleet init`, then it says so in one line
        result = s3_home.run("status", check=False)
        assert result.returncode == 1
        assert "run `gpufleet init`" in result.stderr
        assert "Traceback" not in result.stderr
        # When init runs, then it migrates the index and finds every backend reachable
        out = s3_home.run("init").stdout
        assert f"migrated empty -> {HEAD}" in out
        assert f"input s3://{bucket}/uploads/: reachable" in out
        assert f"output s3://{bucket}/results/: reachable" in out
        assert "cache" in out and "reachable" in out
        # And running it again changes nothing
        assert "already at revision" in s3_home.run("init").stdout
        # When a job runs, then its results land in S3 (encrypted) and in PostgreSQL
        summary = s3_home.json("submit", f"s3://{bucket}/in/", "--model", MODEL, "--wait")
        assert (summary["state"], summary["done"]) == ("succeeded", 40)
        job = summary["job"]
        head = boto3.client("s3").head_object(Bucket=bucket,
                                              Key=f"results/{job}/{keys[0]}.json")
        assert head["ServerSideEncryption"] == "AES256"
        rows = s3_home.run("results", job, "-f", "jsonl").stdout.splitlines()
        assert len(rows) == 40
    finally:
        postgres_server.drop_database(db)


def test_init_reports_every_unreachable_backend_and_fails(s3_home: Home) -> None:
    # Given a missing bucket and a cache where nothing listens
    s3_home.env.update(GPUFLEET_OUTPUT="s3://no-such-bucket-y2/results/",
                       GPUFLEET_CACHE=f"redis://127.0.0.1:{free_port()}/0")
    # When init runs, then it still migrates the (SQLite) index and checks the rest
    result = s3_home.run("init", "--create-queues", check=False)
    assert result.returncode == 1
    assert f"migrated empty -> {HEAD}" in result.stdout
    assert "nothing to create (only sqs:// queues are created)" in result.stdout
    assert "output s3://no-such-bucket-y2/results/: " in result.stderr
    assert "no such bucket" in result.stderr
    assert "unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_init_creates_the_sqs_queue_pair_when_asked(s3_home: Home) -> None:
    # Given an SQS queue URL naming queues that do not exist yet
    name = "gpufleet-" + secrets.token_hex(4)
    s3_home.env.update(GPUFLEET_QUEUE=f"sqs://{name}", GPUFLEET_MAX_RECEIVES="3")
    # When init runs without --create-queues, then it says the queue is missing
    result = s3_home.run("init", check=False)
    assert result.returncode == 1
    assert "--create-queues" in result.stderr
    # When it runs with --create-queues, then the queue and its dead-letter queue exist
    out = s3_home.run("init", "--create-queues").stdout
    assert "created or found the queue and its dead-letter queue" in out
    sqs = boto3.client("sqs")
    urls = sqs.list_queues(QueueNamePrefix=name).get("QueueUrls", [])
    assert len(urls) >= 2
    base = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    policy = json.loads(sqs.get_queue_attributes(
        QueueUrl=base, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert int(policy["maxReceiveCount"]) == 3
    # And a second run finds them
    assert "reachable" in s3_home.run("init", "--create-queues").stdout
