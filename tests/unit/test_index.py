"""The index: jobs with derived states, idempotent result upserts, tag search."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.domain import ItemResult, ItemStatus, JobState, Tag
from gpufleet.errors import JobNotFound
from gpufleet.index import Index


@pytest.fixture
def index(tmp_path: Path) -> Index:
    return Index(f"sqlite:///{tmp_path / 'index.db'}")


def _done(key: str, label: str = "tabby", score: float = 0.9) -> ItemResult:
    return ItemResult(job="j1", key=key, status=ItemStatus.DONE,
                      tags=(Tag("n02123045", label, score), Tag("n02124075", "Egyptian cat", 0.05)))


def test_a_new_job_is_queued_with_every_item_pending(index: Index) -> None:
    job = index.create_job("j1", model="m", input="file:///in/", output="file:///out/",
                           keys=["a", "b", "c"])
    assert job.state is JobState.QUEUED
    assert (job.counts.total, job.counts.pending) == (3, 3)


def test_recording_the_same_result_twice_leaves_one_row_and_one_set_of_tags(index: Index
                                                                            ) -> None:
    # Given a job with two items
    index.create_job("j1", model="m", input="i", output="o", keys=["a", "b"])
    # When item a's result is recorded twice (a redelivered task)
    index.record([_done("a")])
    index.record([_done("a")])
    # Then there is one row, tried twice, with its two tags once
    rows = index.results("j1")
    assert [r["key"] for r in rows] == ["a", "b"]
    assert rows[0]["attempts"] == 2
    assert [t["label"] for t in rows[0]["tags"]] == ["tabby", "Egyptian cat"]
    assert index.job("j1").state is JobState.RUNNING


def test_job_state_follows_the_counts(index: Index) -> None:
    index.create_job("j1", model="m", input="i", output="o", keys=["a", "b"])
    index.record([_done("a"), ItemResult(job="j1", key="b", status=ItemStatus.FAILED,
                                         error="image is truncated")])
    job = index.job("j1")
    assert job.state is JobState.PARTIAL
    assert (job.counts.done, job.counts.failed, job.counts.pending) == (1, 1, 0)
    assert index.results("j1")[1]["error"] == "image is truncated"


def test_fail_pending_only_touches_items_without_an_outcome(index: Index) -> None:
    index.create_job("j1", model="m", input="i", output="o", keys=["a", "b"])
    index.record([_done("a")])
    assert index.fail_pending("j1", ["a", "b"], error="dead-lettered: boom") == 1
    statuses = {r["key"]: r["status"] for r in index.results("j1")}
    assert statuses == {"a": "done", "b": "failed"}


def test_results_filter_by_label_or_wordnet_id_and_page_by_key(index: Index) -> None:
    index.create_job("j1", model="m", input="i", output="o", keys=["a", "b", "c"])
    index.record([_done("a"), _done("b", label="tiger cat"), _done("c")])
    assert [r["key"] for r in index.results("j1", tag="Tabby")] == ["a", "c"]
    assert [r["key"] for r in index.results("j1", tag="n02123045")] == ["a", "b", "c"]
    assert [r["key"] for r in index.results("j1", after="a", limit=1)] == ["b"]
    assert [r["key"] for r in index.iter_results("j1")] == ["a", "b", "c"]


def test_an_unknown_job_is_a_clear_error(index: Index) -> None:
    with pytest.raises(JobNotFound, match="no job 'nope'"):
        index.job("nope")


def test_workers_are_live_until_they_stop_or_go_quiet(tmp_path: Path) -> None:
    now = [1000.0]
    index = Index(f"sqlite:///{tmp_path / 'i.db'}", clock=lambda: now[0])
    index.worker_seen("w1", host="h", pid=1, model="m", state="busy")
    index.worker_seen("w2", host="h", pid=2, model="m", state="stopped")
    assert [w.id for w in index.live_workers(model="m")] == ["w1"]
    now[0] += 60
    assert index.live_workers(model="m", within_s=30) == []
