"""One suite every inbox passes: a directory (file://) and S3 event notifications to SQS
(moto in server mode over HTTP).

What a trigger needs of an inbox: a manifest that lands is offered once, with its key
relative to the inbox and a version; once settled it is not offered again; its own
folder is where its keys are read from; and through ``Ingest`` the same version
makes one job, however often it is offered, while a new version makes another.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from gpufleet.config import Settings
from gpufleet.index import Index
from gpufleet.index.fleet_records import FleetRecords
from gpufleet.intake.inbox import Arrival, Inbox, open_inbox
from gpufleet.intake.ingest import Ingest
from gpufleet.models.base import canonical_spec
from gpufleet.store import open_location
from tests.conformance.backends import jobs_from

MODEL = canonical_spec("synthetic?item_ms=1")


@dataclass
class Landing:
    """An inbox, and how to put an object where it is watched (key relative to the inbox)."""

    inbox: Inbox
    put: Callable[[str, bytes], None]
    bucket: str = ""  # the bucket the inbox is in, and the inbox's prefix in it
    prefix: str = ""


@pytest.fixture(params=["directory", "s3"])
def landing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Landing]:
    if request.param == "directory":
        root = tmp_path / "inbox"

        def put_file(key: str, data: bytes) -> None:
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            before = path.stat().st_mtime_ns if path.exists() else 0
            path.write_bytes(data)
            # A file written again within the clock's tick keeps its mtime, and the inbox
            # would rightly see nothing new: a landing later than the last, as an upload is.
            landed = max(path.stat().st_mtime_ns, before + 1_000_000)
            os.utime(path, ns=(landed, landed))

        inbox = open_inbox(root.as_uri() + "/", settle_s=0)
        yield Landing(inbox, put_file)
    else:
        bucket, _ = request.getfixturevalue("bucket_with_inbox")
        s3 = boto3.client("s3")

        def put_object(key: str, data: bytes) -> None:
            s3.put_object(Bucket=bucket, Key=f"manifests/{key}", Body=data)

        inbox = open_inbox(f"s3://{bucket}/manifests/")
        yield Landing(inbox, put_object, bucket=bucket, prefix="manifests/")
    inbox.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"GPUFLEET_HOME": str(tmp_path / "home")})


def _arrivals(inbox: Inbox, count: int, *, timeout_s: float = 20.0) -> list[Arrival]:
    """What the inbox offers, looking until count arrived (or, for count 0, a few looks)."""
    found: list[Arrival] = []
    deadline = time.monotonic() + (timeout_s if count else 2.0)
    while time.monotonic() < deadline and (len(found) < count or not count):
        found += inbox.arrivals()
    return found


class _Offers:
    """An inbox that remembers the keys it offered, so a test can wait for a landing to be
    handled instead of waiting out a timeout for a job that must not come."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.keys: list[str] = []

    def arrivals(self) -> list[Arrival]:
        found = self.inbox.arrivals()
        self.keys += [arrival.key for arrival in found]
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inbox, name)


def test_a_manifest_is_offered_once_with_its_key_and_version(landing: Landing) -> None:
    # Given a manifest put in a folder of the inbox
    landing.put("day 1/photos.txt", b"a.jpg\nb.jpg\n")
    # When the inbox is looked at, then it is offered with its relative key and a version
    (arrival,) = _arrivals(landing.inbox, 1)
    assert arrival.key == "day 1/photos.txt"
    assert arrival.version and arrival.at > 0
    assert arrival.load() == b"a.jpg\nb.jpg\n"
    # And once settled as handled, it is not offered again
    landing.inbox.settle(arrival, handled=True)
    assert _arrivals(landing.inbox, 0) == []


def test_a_manifests_keys_are_read_from_its_own_folder(landing: Landing) -> None:
    landing.put("day 2/photo.jpg", b"JPEG bytes")
    landing.put("day 2/m.txt", b"photo.jpg\n")
    arrival = next(a for a in _arrivals(landing.inbox, 1) if a.key == "day 2/m.txt")
    folder = open_location(landing.inbox.default_input(arrival.key))
    assert folder.get("photo.jpg") == b"JPEG bytes"


def test_one_version_makes_one_job_and_a_new_version_another(
        landing: Landing, settings: Settings) -> None:
    # Given a trigger reading the inbox
    index = Index(settings.db)
    offers = _Offers(landing.inbox)
    ingest = Ingest(settings, index, offers, model=MODEL)
    # When a manifest lands, and lands again with the very same bytes
    landing.put("m.txt", b"a.jpg\n")
    first = jobs_from(ingest, 1)
    landing.put("m.txt", b"a.jpg\n")
    again = jobs_from(ingest, until=lambda: offers.keys.count("m.txt") >= 2)
    # Then the second landing was offered, and there is still one job
    assert offers.keys.count("m.txt") >= 2
    assert len(first) == 1 and again == []
    # When it lands with other content, then that is a second job, of its items
    landing.put("m.txt", b"a.jpg\nb.jpg\n")
    (second,) = jobs_from(ingest, 1)
    assert second != first[0] and index.job(second).counts.total == 2
    index.close()


def test_a_bad_manifest_is_refused_once_with_its_reason(
        landing: Landing, settings: Settings) -> None:
    index = Index(settings.db)
    ingest = Ingest(settings, index, landing.inbox, model=MODEL)
    landing.put("broken.json", b'{"items": [')
    deadline = time.monotonic() + 20
    refused: list[dict[str, object]] = []
    while not refused and time.monotonic() < deadline:
        assert ingest.poll() == []
        refused = [m for m in FleetRecords(index).manifests(landing.inbox.uri)
                   if m["state"] == "refused"]
    assert [m["key"] for m in refused] == ["broken.json"]
    assert refused[0]["reason"]
    assert jobs_from(ingest, 0) == [] and _arrivals(landing.inbox, 0) == []
    index.close()


def test_a_gzipped_manifest_makes_a_job(landing: Landing, settings: Settings) -> None:
    index = Index(settings.db)
    ingest = Ingest(settings, index, landing.inbox, model=MODEL)
    landing.put("day 3/keys.csv.gz", gzip.compress(b"bucket,key\nb,a.jpg\nb,b%20c.jpg\n"))
    (job,) = jobs_from(ingest, 1)
    assert sorted(i.key for i in index.results(job)) == ["a.jpg", "b c.jpg"]
    index.close()


def test_an_s3_inventory_delivery_makes_one_job_of_its_current_objects(
        landing: Landing, settings: Settings) -> None:
    """What S3 Inventory writes to its destination: data files, manifest.json, its checksum,
    Hive symlinks. Only manifest.json makes a job; the rest are read through it or left."""
    index = Index(settings.db)
    ingest = Ingest(settings, index, landing.inbox, model=MODEL)
    data = gzip.compress(b'"photos","a.jpg","10"\n"photos","b+c.jpg","20"\n')
    part = f"inv/photos/daily/data/{uuid.uuid4()}.csv.gz"
    landing.put(part, data)
    landing.put("inv/photos/daily/hive/dt=2026-12-05-01-00/symlink.txt", b"s3://x/y.csv.gz\n")
    landing.put("inv/photos/daily/2026-12-05T01-00Z/manifest.checksum", b"0" * 32)
    landing.put("inv/photos/daily/2026-12-05T01-00Z/manifest.json", json.dumps({
        "sourceBucket": "photos", "destinationBucket": f"arn:aws:s3:::{landing.bucket}",
        "version": "2016-11-30", "fileFormat": "CSV", "fileSchema": "Bucket, Key, Size",
        "files": [{"key": landing.prefix + part, "size": len(data),
                   "MD5checksum": hashlib.md5(data).hexdigest()}]}).encode())
    (job,) = jobs_from(ingest, 1)
    assert index.job(job).input == "s3://photos/"
    assert sorted(i.key for i in index.results(job)) == ["a.jpg", "b c.jpg"]
    refused = [m for m in FleetRecords(index).manifests(landing.inbox.uri)
               if m["state"] == "refused"]
    assert refused == []
    index.close()
