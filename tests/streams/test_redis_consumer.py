"""What the consumer does whatever the source, on Redis Streams: back-pressure, hostile
records, a window left open by a crash, and the `gpufleet stream` command itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

import gpufleet.streams.consumer as consumer_module
from gpufleet.config import Settings
from gpufleet.index import Index
from gpufleet.index.stream_records import StreamRecords
from gpufleet.preprocess.chain import canonical_chain
from tests.conftest import Home
from tests.servers import RedisServer
from tests.streams.conftest import (
    MODEL,
    Feed,
    consumer,
    crash_before_ack,
    redis_feed,
    step_until,
)


@pytest.fixture
def feed(redis_server: RedisServer, tmp_path: Path) -> Feed:
    (tmp_path / "photos").mkdir()
    return redis_feed(redis_server, (tmp_path / "photos").as_uri() + "/")


def _pending(feed: Feed) -> int:
    client = redis.Redis.from_url(feed.uri.split("?")[0])
    stream = feed.uri.split("stream=")[1].split("&")[0]
    return int(client.xpending(stream, "gpufleet-stream")["pending"])


def _s3_event(bucket: str, key: str, version: str, *, name: str = "ObjectCreated:Put") -> dict:
    return {"Records": [{"eventName": name, "eventTime": "2026-12-05T00:00:00.000Z",
                         "s3": {"bucket": {"name": bucket},
                                "object": {"key": key, "versionId": version}}}]}


def test_a_slow_fleet_stops_the_reading(settings: Settings, index: Index, feed: Feed) -> None:
    # Given a backlog bound of 3 items, and a first window of 5 that nobody works on
    for i in range(5):
        feed.put(f"first-{i}.jpg")
    c = consumer(settings, index, feed, max_backlog=3)
    step_until(c, lambda: c.stats.jobs == 1, what="the first job")
    # When five more keys arrive
    for i in range(5):
        feed.put(f"second-{i}.jpg")
    for _ in range(5):
        c.step()
    # Then none is read: they wait in the stream, not in this process
    assert c.stats.records == 5 and c.stats.paused > 0 and c.holding == 0
    # When the fleet catches up (here: the first job is cancelled, nothing pending)
    index.cancel_job(c.stats.job_ids[0])
    step_until(c, lambda: c.stats.jobs == 2, what="the second job")
    # Then reading goes on
    assert c.stats.records == 10 and _pending(feed) == 0


def test_hostile_records_are_rejected_with_reasons_and_acknowledged(
        settings: Settings, index: Index, feed: Feed) -> None:
    # Given good keys among records that are no key at all or break the key rules
    event = _s3_event("photos", "cats/tom%20cat.jpg", "v1")
    hostile = {
        b"\xff\xfe not utf-8": "not UTF-8 text",
        b"{not json": "invalid JSON",
        b'{"hello": "world"}': "not an S3 event notification",
        b"[" * 10_000: "an empty record",  # placeholder, replaced below
        b"../etc/passwd": "'..' segment",
        b"a//b.jpg": "empty segment",
        b"bell\x07.jpg": "control character",
        b"one.jpg\ntwo.jpg": "more than one line",
        b"   ": "an empty record",
        ("k" * 1100).encode(): "longer than 1024",
        b"https://example.com/a.jpg": "not an s3:// object URI",
        json.dumps(_s3_event("photos", "x", "v", name="ObjectRemoved:Delete")).encode():
            "no ObjectCreated record",
        json.dumps(_s3_event("photos", "bad/../key.jpg", "v2")).encode(): "'..' segment",
    }
    hostile.pop(b"[" * 10_000)
    hostile[b"{" + b'"a":{' * 200 + b"}" * 201] = "invalid JSON"  # nested 200 deep
    client = redis.Redis.from_url(feed.uri.split("?")[0])
    stream = feed.uri.split("stream=")[1].split("&")[0]
    feed.put("good/1.jpg")
    for data in hostile:
        client.xadd(stream, {"key": data})
    client.xadd(stream, {"key": json.dumps(event)})
    client.xadd(stream, {"key": json.dumps(event)})  # the same event, notified twice
    sns = {"Type": "Notification", "Message": json.dumps(_s3_event("photos", "dogs/rex.jpg",
                                                                     "v9"))}
    client.xadd(stream, {"key": json.dumps(sns)})
    client.xadd(stream, {"a": "1", "b": "2"})  # two fields, none named key
    feed.put("s3://other-bucket/in/there.jpg")
    feed.put("good/1.jpg")  # the same key in another record: one item
    c = consumer(settings, index, feed, max_items=100, max_s=0.3)
    # When the consumer reads them all
    step_until(c, lambda: c.stats.records == len(hostile) + 7 and not c.holding,
               what="every record")
    # Then the good ones are jobs (one per place the objects live), the rest rejected
    jobs = {index.job(j).input: index.job(j) for j in c.stats.job_ids}
    assert sorted(jobs) == sorted([feed.input, "s3://photos/", "s3://other-bucket/"])
    keys = {where: sorted(i.key for i in index.iter_results(j.id)) for where, j in jobs.items()}
    assert keys["s3://photos/"] == ["cats/tom cat.jpg", "dogs/rex.jpg"]
    assert keys[feed.input] == ["good/1.jpg"]
    assert keys["s3://other-bucket/"] == ["in/there.jpg"]
    assert c.stats.duplicates == 0  # the repeated event collapsed within its window
    assert c.stats.items == 4
    rejected = StreamRecords(index).rejected(c.source.uri)
    reasons = [r["reason"] for r in rejected]
    assert len(rejected) == len(hostile) + 1 == c.stats.rejected
    for expected in hostile.values():
        assert any(expected in reason for reason in reasons), expected
    assert any("not an S3 event" in r for r in reasons)  # the two-field entry
    # and nothing is left pending: a bad record never blocks the stream
    assert _pending(feed) == 0


def test_a_window_left_open_by_a_crash_becomes_its_job_on_restart(
        settings: Settings, index: Index, feed: Feed, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a consumer that dies after recording a window, before making its job
    for i in range(5):
        feed.put(f"open/{i}.jpg")
    first = consumer(settings, index, feed)

    def dies(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed before the job was made")

    monkeypatch.setattr(consumer_module, "create_job", dies)
    with pytest.raises(KeyboardInterrupt):
        step_until(first, lambda: False)
    first.source.close()
    monkeypatch.undo()
    assert index.jobs() == []
    # When a consumer starts again
    second = consumer(settings, index, feed)
    (made,) = second.recover()
    step_until(second, lambda: second.stats.duplicates == 5, what="the records again")
    # Then the window's job is made once, with its five items, and the records acknowledged
    assert [j.id for j in index.jobs()] == [made]
    assert index.job(made).counts.total == 5 and second.stats.jobs == 0
    assert _pending(feed) == 0


def test_the_stream_command(home: Home, feed: Feed) -> None:
    # Given three keys on a stream
    for i in range(3):
        feed.put(f"cli/{i}.jpg")
    # When `gpufleet stream` runs until the stream is quiet, its jobs preprocessed and
    # written as shards
    result = home.json("stream", "--source", feed.uri, "--input", str(feed.input),
                       "--model", MODEL, "--window-s", "0.3", "--exit-idle", "1",
                       "--preprocess", "exif,min-size=8", "--results", "shards")
    # Then it made one job of the three, with the chain and the results mode
    assert result["items"] == 3 and result["jobs"] == 1 and result["rejected"] == 0
    index = home.index()
    (job,) = index.jobs()
    index.close()
    assert job.id == result["job_ids"][0] and job.counts.total == 3
    assert job.preprocess == canonical_chain("exif,min-size=8") and job.results == "shards"
    # And a source it cannot use, or a chain it cannot run, is one line
    bad = home.run("stream", "--source", "amqp://broker/queue", check=False)
    assert bad.returncode == 1 and "unsupported stream source" in bad.stderr
    bad = home.run("stream", "--source", feed.uri, "--preprocess", "sharpen", check=False)
    assert bad.returncode != 0 and "unknown preprocess step" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_on_postgresql_a_crash_before_ack_duplicates_nothing(
        tmp_path: Path, feed: Feed, postgres_url: str) -> None:
    # Given an index on PostgreSQL, migrated by `gpufleet init` (revision 0007 included)
    from gpufleet.index.migrate import upgrade

    upgrade(postgres_url)
    settings = Settings.from_env({"GPUFLEET_HOME": str(tmp_path / "pg-home"),
                                  "GPUFLEET_DB": postgres_url, "GPUFLEET_MODEL": MODEL})
    index = Index(settings.db)
    for i in range(5):
        feed.put(f"pg/{i}.jpg")
    crash_before_ack(consumer(settings, index, feed))
    # When a new consumer reads the same records again
    second = consumer(settings, index, feed)
    step_until(second, lambda: second.stats.duplicates == 5, what="the records again")
    # Then one job of five, and the stream acknowledged
    (job,) = index.jobs()
    assert job.counts.total == 5 and second.stats.jobs == 0 and _pending(feed) == 0
    index.close()


def test_another_consumer_claims_what_a_dead_one_left_pending(
        settings: Settings, index: Index, feed: Feed) -> None:
    # Given consumer c1 of the group, killed after enqueueing its window, before XACK
    for i in range(5):
        feed.put(f"claimed/{i}.jpg")
    crash_before_ack(consumer(settings, index, feed, name="c1"))
    assert _pending(feed) == 5
    # When c2, which claims entries idle half a second, reads the stream
    claiming = Feed(feed.uri + "&claim_idle_s=0.5", feed.put, feed.input)
    c2 = consumer(settings, index, claiming, name="c2", max_s=0.3)
    step_until(c2, lambda: c2.stats.duplicates == 5, what="c1's entries claimed")
    # Then c1's entries are recognised as enqueued, and acknowledged: one job in all
    assert len(index.jobs()) == 1 and c2.stats.jobs == 0 and _pending(feed) == 0
    c2.source.close()


def test_old_events_are_forgotten_but_not_those_of_an_open_window(
        settings: Settings, index: Index, feed: Feed) -> None:
    # Given a window made into a job, one left open by a crash, and a rejected record
    for i in range(5):
        feed.put(f"old/{i}.jpg")
    feed.put("../bad")
    c = consumer(settings, index, feed, max_items=6)
    step_until(c, lambda: c.stats.jobs == 1)
    records = StreamRecords(index)
    records.open_window(c.source.uri, "left-open", input=str(feed.input),
                        events=[("e1", "open/1.jpg")])
    # When events seen before now are forgotten
    forgotten = records.forget(c.source.uri, before=index.clock() + 1)
    # Then the job's and the rejection's go, the open window's stay for its recovery
    assert forgotten == 6
    assert records.known(c.source.uri, ["e1"]) == {"e1": "left-open"}
    assert records.window_keys("left-open") == ["open/1.jpg"]
    assert [w["state"] for w in records.windows(c.source.uri)] == ["enqueued", "open"]
    c.source.close()
