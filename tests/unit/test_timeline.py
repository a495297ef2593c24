"""A tenant's work over time: items finished, backlog and cost per bucket, from the index."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.api.timeline import MAX_BUCKETS, bucket_s_for, series
from gpufleet.config import Settings
from gpufleet.domain import ItemResult, ItemStatus
from gpufleet.index import Index

T0 = 1_000_000.0  # a whole number of buckets


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_buckets_count_the_tenants_items_rebuild_its_backlog_and_spread_its_cost(
        tmp_path: Path) -> None:
    settings = Settings.from_env({"GPUFLEET_HOME": str(tmp_path / "home")})
    clock = Clock()
    index = Index(settings.db, clock=clock)
    try:
        # Given a job of 10 items created at T0, 4 done at +15 s and 2 failed at +25 s
        index.create_job("j1", model="m", input="file:///in/", output="file:///out/",
                         keys=[f"k{i}" for i in range(10)], tenant="acme")
        index.record([ItemResult(job="j1", key=f"k{i}", worker="w1", finished_at=T0 + 15,
                                 status=ItemStatus.DONE) for i in range(4)]
                     + [ItemResult(job="j1", key=f"k{i}", worker="w1", finished_at=T0 + 25,
                                   status=ItemStatus.FAILED, error="bad") for i in (4, 5)])
        # And a second job of 3 items created at +20 s, and another tenant's job
        clock.now = T0 + 20
        index.create_job("j2", model="m", input="file:///in/", output="file:///out/",
                         keys=["a", "b", "c"], tenant="acme")
        index.create_job("other", model="m", input="file:///in/", output="file:///out/",
                         keys=[f"o{i}" for i in range(50)], tenant="beta")
        index.record([ItemResult(job="other", key=f"o{i}", worker="w1", finished_at=T0 + 15,
                                 status=ItemStatus.DONE) for i in range(50)])
        # And the worker that did them all cost $0.56 (56 items: 1 cent each)
        index.worker_seen("w1", host="h", pid=1, model="m", state="ready", bootstrap_s=0.0,
                          extra={"price_per_h": 36.0, "busy_s": 56.0, "idle_s": 0.0,
                                 "items": 56})
        with index.transaction() as conn:
            # When acme's work is read in 10 s buckets from T0 to +35 s
            found = series(conn, "acme", since=T0, until=T0 + 35, bucket_s=10)
    finally:
        index.close()
    # Then each bucket has acme's items only, and the backlog at its end
    assert [(b.at - T0, b.done, b.failed, b.backlog) for b in found] == [
        (0, 0, 0, 10), (10, 4, 0, 6), (20, 0, 2, 7), (30, 0, 0, 7)]
    # And the cost of j1 ($0.06, its 6 items' share) lies where its items finished
    assert [b.cost for b in found] == pytest.approx([0.0, 0.04, 0.02, 0.0])


def test_a_window_has_at_most_max_buckets_of_whole_seconds() -> None:
    assert bucket_s_for(60) == 1
    assert bucket_s_for(3600) == 30
    assert bucket_s_for(7 * 86400) * MAX_BUCKETS >= 7 * 86400
