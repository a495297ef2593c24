"""Every real source: keys become jobs with the right items, windows close by size and by
time, and a consumer that dies after enqueueing but before acknowledging makes, once
restarted, neither a second job nor a duplicate item."""

from __future__ import annotations

import time

import pytest

from gpufleet.config import Settings
from gpufleet.errors import ConfigError
from gpufleet.index import Index
from gpufleet.index.stream_records import StreamRecords
from gpufleet.streams.consumer import JobTemplate
from tests.streams.conftest import Feed, consumer, crash_before_ack, step_until


def _items(index: Index, job_id: str) -> list[str]:
    return sorted(item.key for item in index.iter_results(job_id))


def test_keys_become_jobs_of_those_items(settings: Settings, index: Index, feed: Feed) -> None:
    # Given ten keys on the stream and windows of five
    keys = [f"day1/photo-{i:02d}.jpg" for i in range(10)]
    for key in keys:
        feed.put(key)
    c = consumer(settings, index, feed)
    # When the consumer reads them
    step_until(c, lambda: c.stats.items == 10, what="ten items")
    # Then they are two jobs of five, every key once, in the right place
    assert c.stats.jobs == 2
    jobs = [index.job(j) for j in c.stats.job_ids]
    assert sorted(k for j in jobs for k in _items(index, j.id)) == keys
    assert all(j.counts.total == 5 for j in jobs)
    assert {j.model for j in jobs} == {c.job.model}
    where = feed.input or "s3://"
    assert all(j.input.startswith(where) for j in jobs)
    # and the stream's records are all acknowledged: a fresh reader finds nothing more
    c.source.close()
    again = consumer(settings, index, feed, max_s=0.3)
    for _ in range(3):
        again.step()
    time.sleep(feed.redelivery_s)
    again.step()
    again.flush()
    assert again.stats.items == 0 and again.stats.duplicates == 0
    again.source.close()


def test_a_window_closes_by_time_when_it_does_not_fill(settings: Settings, index: Index,
                                                        feed: Feed) -> None:
    # Given three keys and windows of a hundred items or half a second
    for i in range(3):
        feed.put(f"late-{i}.jpg")
    c = consumer(settings, index, feed, max_items=100, max_s=0.5)
    # When the consumer goes on reading
    step_until(c, lambda: c.stats.jobs == 1, what="the window's time to end")
    # Then the window became a job of the three, not waiting for more
    assert _items(index, c.stats.job_ids[0]) == [f"late-{i}.jpg" for i in range(3)]
    c.source.close()


def test_a_crash_between_enqueue_and_ack_duplicates_nothing(settings: Settings, index: Index,
                                                           feed: Feed) -> None:
    # Given five keys, and a consumer that dies after enqueueing their window
    keys = [f"crash/{i}.jpg" for i in range(5)]
    for key in keys:
        feed.put(key)
    crash_before_ack(consumer(settings, index, feed))
    (made,) = [j.id for j in index.jobs()]
    assert _items(index, made) == keys
    # When a new consumer starts and the source offers the records again
    time.sleep(feed.redelivery_s)
    second = consumer(settings, index, feed)
    second.recover()
    step_until(second, lambda: second.stats.duplicates == 5, what="the records again")
    # Then they are recognised: no second job, no item twice, and now acknowledged
    assert second.stats.jobs == 0 and second.stats.items == 0
    assert [j.id for j in index.jobs()] == [made]
    assert index.job(made).counts.total == 5
    windows = StreamRecords(index).windows(second.source.uri)
    assert [(w["id"], w["state"], w["items"]) for w in windows] == [(made, "enqueued", 5)]
    second.source.close()
    time.sleep(feed.redelivery_s)
    third = consumer(settings, index, feed, max_s=0.3)
    for _ in range(3):
        third.step()
    third.flush()
    assert third.stats.records == 0
    third.source.close()


def test_a_bad_results_mode_is_refused_before_anything_is_read() -> None:
    with pytest.raises(ConfigError, match="results must be objects or shards, not 'bogus'"):
        JobTemplate(model="synthetic", results="bogus")
