"""Exports read the same on SQLite and PostgreSQL (migrated as `gpufleet init` does):
every item once, in the index's key order, with its tags, across batch boundaries; and a
job's results mode round-trips through the jobs table."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.domain import ItemResult, ItemStatus, Tag
from gpufleet.export import read_batches
from gpufleet.index import Index
from gpufleet.index.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Index:
    if request.param == "sqlite":
        return Index(f"sqlite:///{tmp_path / 'index.db'}")
    url: str = request.getfixturevalue("postgres_url")
    upgrade(url)
    return Index(url)


def test_batches_cover_every_item_once_in_key_order_with_tags(index: Index) -> None:
    # Given a shard-mode job with keys that sort differently by byte and by word, some done
    keys = ["b/2.jpg", "a-b.jpg", "a/b.jpg", "A.jpg", "ä.jpg", "a b.jpg", "z.jpg", "0.jpg"]
    index.create_job("j1", model="m", input="file:///in/", output="file:///out/", keys=keys,
                     results="shards")
    index.take_up("j1")
    index.record([ItemResult("j1", k, ItemStatus.DONE, tags=(Tag("n1", "cat", 0.9),
                                                             Tag("n2", "dog", 0.1)))
                  for k in keys[:5]])
    index.record([ItemResult("j1", keys[5], ItemStatus.FAILED, error="not an image")])
    # When it is read three items at a time
    rows = [row for batch in read_batches(index, "j1", batch_rows=3) for row in batch]
    # Then each item is there once, in the order the index lists them, with its outcome
    listed = list(index.iter_results("j1"))
    assert [r[1] for r in rows] == [i.key for i in listed] and len(rows) == len(keys)
    assert [(r[2], r[4], [t["label"] for t in r[7]]) for r in rows] == [
        (i.status.value, i.error, [t.label for t in i.tags]) for i in listed]
    # And the job's results mode is kept: shards, so no per-item result object
    assert index.job("j1").results == "shards"
    assert all(r[6] is None for r in rows)
    index.close()
