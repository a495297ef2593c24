"""Tar shards as inputs: built at test time with tarfile from the sample photos, expanded
at submission into one item per member, each fetched by a worker with one ranged read, on
a directory store and on S3 (moto in server mode)."""

from __future__ import annotations

import bz2
import gzip
import io
import secrets
import tarfile
import threading
from pathlib import Path

import boto3
import pytest

from gpufleet.domain import ItemStatus
from gpufleet.errors import ManifestError
from gpufleet.index import Index
from gpufleet.jobs import JobRequest, create_job
from gpufleet.models import load_tagger
from gpufleet.shardkeys import parse_member
from gpufleet.shards import expand_shards
from gpufleet.sources import submit_source
from gpufleet.store import open_location
from gpufleet.worker.observer import Observer
from tests.api.conftest import ApiServer, api_home, make_key, tenant_input
from tests.conftest import Home
from tests.pipeline_jobs import MODEL, observed_pipeline

PHOTOS = ("n01440764_tench.JPEG", "n01496331_electric_ray.JPEG", "n01530575_brambling.JPEG")
REFUSED = {"../up.jpg": "bad-name", "/etc/abs.jpg": "bad-name", "link.jpg": "link",
           "hard.jpg": "link", "pipe": "fifo", "tty": "device"}


def add(tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
        link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    tar.addfile(info, io.BytesIO(data) if data else None)


def shard(sample_dir: Path, *, hostile: bool = True) -> tuple[bytes, dict[str, bytes]]:
    """A WebDataset-style shard of real photos (and, if hostile, members that are no items);
    its bytes and the photo members by name."""
    photos = {f"{n[:9]}/{n}": (sample_dir / n).read_bytes() for n in PHOTOS}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "n01440764", kind=tarfile.DIRTYPE)
        for name, data in photos.items():
            add(tar, name, data)
        if hostile:
            add(tar, "../up.jpg", b"x")
            add(tar, "/etc/abs.jpg", b"x")
            add(tar, "link.jpg", kind=tarfile.SYMTYPE, link="/etc/passwd")
            add(tar, "hard.jpg", kind=tarfile.LNKTYPE, link=next(iter(photos)))
            add(tar, "pipe", kind=tarfile.FIFOTYPE)
            add(tar, "tty", kind=tarfile.CHRTYPE)
    return out.getvalue(), photos


def name_of(key: str) -> str:
    """The member name at the end of a member key."""
    return key.split(".tar@", 1)[1].split("/", 1)[1]


def run_worker(home: Home) -> None:
    observed_pipeline(home, Observer()).run(stop=threading.Event(), max_idle_s=0.5)


def test_a_shard_in_a_folder_is_one_item_per_member_fetched_by_range(
        home: Home, sample_dir: Path) -> None:
    # Given a folder holding a shard (3 photos, a folder, 6 hostile members) and a photo
    folder = home.path / "photos"
    (folder / "shards").mkdir(parents=True)
    data, photos = shard(sample_dir)
    (folder / "shards" / "000123.tar").write_bytes(data)
    (folder / "loose.jpg").write_bytes((sample_dir / PHOTOS[0]).read_bytes())
    # When it is submitted and a worker runs
    index = home.index()
    job = submit_source(home.settings, index, folder, model=MODEL)
    run_worker(home)
    # Then each photo member is an item keyed by shard, byte range and name
    items = {i.key: i for i in index.results(job.id)}
    assert len(items) == 1 + len(photos) + len(REFUSED)
    named = {name_of(k): k for k in items if "@" in k and "!" not in k}
    assert sorted(named) == sorted(photos)
    # And the worker read exactly each member's bytes: its tags are those of the photo
    tagger = load_tagger(MODEL, home.settings)
    for name, key in named.items():
        assert items[key].status is ItemStatus.DONE
        assert list(items[key].tags) == tagger.infer([tagger.preprocess(photos[name])])[0]
        assert key.startswith("shards/000123.tar@")
    # And every member that cannot be an item failed with its reason; nothing was lost
    refused = [k for k in items if "!" in k]
    assert sorted(k.rsplit("!", 1)[1] for k in refused) == sorted(REFUSED.values())
    for key in refused:
        assert items[key].status is ItemStatus.FAILED
        assert "only regular files are items" in (items[key].error or "")
    assert items["loose.jpg"].status is ItemStatus.DONE
    assert {m.shard for k in items if (m := parse_member(k))} == {"shards/000123.tar"}


def test_a_member_key_resubmitted_is_read_as_it_is(home: Home, sample_dir: Path) -> None:
    # Given a shard's member keys (a failed member run again, say)
    folder = home.path / "in"
    folder.mkdir()
    data, photos = shard(sample_dir, hostile=False)
    (folder / "s.tar").write_bytes(data)
    location = open_location(folder.as_uri() + "/")
    keys = list(expand_shards(location, ["s.tar"], max_entries=10))
    # When they are submitted themselves / Then they pass unexpanded and read the members
    job = create_job(home.settings, home.index(), JobRequest(
        items=keys[:1], input=location.uri, model=MODEL))
    assert [i.key for i in home.index().results(job.id)] == keys[:1]
    assert location.get(keys[0]) == photos[name_of(keys[0])]
    assert parse_member("plain@1-2/x.jpg") is None  # '@' alone makes no member
    assert parse_member("s.tar@9-3/x.jpg") is None


@pytest.mark.parametrize("name, content, message", [
    ("cut.tar", lambda d: d[:3000], "truncated tar archive"),
    ("cut-at-header.tar", lambda d: d[:1536 + 200], "truncated tar archive"),
    ("notes.tar", lambda d: b"not a tar, a note\n" * 100, "not a readable tar archive"),
    ("empty.tar", lambda d: b"", "not a readable tar archive"),
    ("zeros.tar", lambda d: b"\0" * 10240, "an empty tar archive"),
    ("photos.tar.gz", lambda d: d, "compressed tar shards are not supported"),
    ("gzipped.tar", lambda d: gzip.compress(d), "gzip-compressed data, not a plain tar"),
    ("bzipped.tar", lambda d: bz2.compress(d), "bzip2-compressed data, not a plain tar"),
])
def test_a_shard_that_cannot_be_read_refuses_the_submission_naming_it(
        home: Home, sample_dir: Path, name: str, content: object, message: str) -> None:
    # Given a folder with a good photo and a broken shard
    folder = home.path / "photos"
    folder.mkdir()
    data, _ = shard(sample_dir, hostile=False)
    (folder / name).write_bytes(content(data))  # type: ignore[operator]
    (folder / "a.jpg").write_bytes(b"x")
    index = home.index()
    # When submitted / Then one clear error names the shard, and no job is left
    with pytest.raises(ManifestError, match=message) as refused:
        submit_source(home.settings, index, folder, model=MODEL)
    assert name in str(refused.value) and "\n" not in str(refused.value)
    assert index.jobs() == []


def test_a_shard_over_the_entry_limit_is_refused(home: Home, sample_dir: Path) -> None:
    # Given GPUFLEET_MAX_SHARD_ENTRIES=3 and a shard of 4 entries (a folder, 3 photos)
    home.env["GPUFLEET_MAX_SHARD_ENTRIES"] = "3"
    folder = home.path / "in"
    folder.mkdir()
    (folder / "s.tar").write_bytes(shard(sample_dir, hostile=False)[0])
    # When submitted / Then refused, saying which limit
    with pytest.raises(ManifestError, match=r"s.tar: more than 3 entries \(GPUFLEET_MAX_SHARD"):
        submit_source(home.settings, home.index(), folder, model=MODEL)
    home.env["GPUFLEET_MAX_SHARD_ENTRIES"] = "4"
    assert submit_source(home.settings, home.index(), folder, model=MODEL).counts.total == 3


def test_a_shard_in_s3_is_expanded_and_its_members_read_by_ranged_gets(
        aws_env: object, home: Home, sample_dir: Path) -> None:
    # Given a bucket with shards/000123.tar (on moto, over HTTP)
    bucket = "shards-" + secrets.token_hex(4)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    data, photos = shard(sample_dir)
    s3.put_object(Bucket=bucket, Key="shards/000123.tar", Body=data)
    s3.put_object(Bucket=bucket, Key="shards/README.txt", Body=b"about")
    # When the prefix is submitted, narrowed to tar files, and a worker runs
    index: Index = home.index()
    job = submit_source(home.settings, index, f"s3://{bucket}/shards/", include=["*.tar"],
                        model=MODEL)
    run_worker(home)
    # Then the photos are done with the tags of their own bytes, the rest failed
    items = index.results(job.id)
    done = [i for i in items if i.status is ItemStatus.DONE]
    assert sorted(name_of(i.key) for i in done) == sorted(photos)
    assert all(i.key.startswith("000123.tar@") for i in items)
    assert sum(i.status is ItemStatus.FAILED for i in items) == len(REFUSED)
    location = open_location(f"s3://{bucket}/shards/")
    for item in done:
        assert location.get(item.key) == photos[name_of(item.key)]


def test_the_api_counts_a_shards_members_against_its_item_limit(
        tmp_path: Path, sample_dir: Path) -> None:
    # Given an API allowing 8 items per job, and a tenant's shard of 9 members
    home = api_home(tmp_path, GPUFLEET_API_MAX_ITEMS="8")
    _, key = make_key(home, "t", "submit,read")
    (tenant_input(home, "t") / "shards").mkdir(parents=True)
    data, photos = shard(sample_dir)
    (tenant_input(home, "t") / "shards" / "000123.tar").write_bytes(data)
    server = ApiServer(home.settings)
    try:
        with server.client(key) as http:
            # When the one shard key is submitted / Then its 9 members are over the limit
            big = http.post("/v1/jobs", json={"items": ["shards/000123.tar"],
                                              "model": "synthetic"})
            assert big.status_code == 422 and "over the limit of 8" in big.json()["detail"]
            # And a shard within it is a job of its members
            small, _ = shard(sample_dir, hostile=False)
            (tenant_input(home, "t") / "shards" / "000124.tar").write_bytes(small)
            job = http.post("/v1/jobs", json={"items": ["shards/000124.tar"],
                                              "model": "synthetic"})
            assert job.status_code == 201, job.text
            items = http.get(f"/v1/jobs/{job.json()['job']}/items").json()["items"]
            assert sorted(name_of(i["key"]) for i in items) == sorted(photos)
            # And a broken shard is a one-line 422 naming it
            (tenant_input(home, "t") / "shards" / "bad.tar").write_bytes(b"no tar")
            bad = http.post("/v1/jobs", json={"items": ["shards/bad.tar"],
                                              "model": "synthetic"})
            assert bad.status_code == 422 and "bad.tar" in bad.json()["detail"]
    finally:
        server.stop()


def test_one_shard_is_a_source_itself_a_file_or_an_object(
        aws_env: object, home: Home, sample_dir: Path) -> None:
    # Given one shard as a local file and as an object
    data, photos = shard(sample_dir, hostile=False)
    (home.path / "000007.tar").write_bytes(data)
    bucket = "shard-" + secrets.token_hex(4)
    boto3.client("s3").create_bucket(Bucket=bucket)
    boto3.client("s3").put_object(Bucket=bucket, Key="s/000007.tar", Body=data)
    index = home.index()
    # When each is submitted / Then the job is its members
    for source in (home.path / "000007.tar", f"s3://{bucket}/s/000007.tar"):
        job = submit_source(home.settings, index, source, model=MODEL)
        assert sorted(name_of(i.key) for i in index.results(job.id)) == sorted(photos)
    # And --include, which narrows folders, is refused with one
    with pytest.raises(ManifestError, match="a tar shard lists exactly what to process"):
        submit_source(home.settings, index, home.path / "000007.tar", include=["*.jpg"])
