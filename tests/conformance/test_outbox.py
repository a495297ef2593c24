"""The notification outbox on SQLite and PostgreSQL: an event noticed twice is one row, a row
is claimed by one dispatcher at a time, and each attempt is logged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.config import NotifySettings
from gpufleet.domain import ItemResult, ItemStatus
from gpufleet.index import Index
from gpufleet.index.migrate import upgrade
from gpufleet.index.outbox import Outbox
from gpufleet.notify.events import notice
from gpufleet.notify.targets import TargetStore

TOPIC = "arn:aws:sns:us-east-1:123456789012:jobs"  # never sent to here: only written


@pytest.fixture(params=["sqlite", "postgresql"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Index]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'index.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        upgrade(url)
    clock = [1000.0]
    idx = Index(url, clock=lambda: clock[0])
    yield idx
    idx.close()


def test_events_noticed_twice_are_written_once(index: Index) -> None:
    # Given a tenant's target and two jobs of the tenant, one of them finished
    targets = TargetStore(index, NotifySettings())
    target = targets.add(TOPIC, tenant="a")
    for job_id in ("j1", "j2"):
        index.create_job(job_id, model="m", input="file:///i/", output="file:///o/",
                         keys=["k"], tenant="a")
    index.record([ItemResult(job="j1", key="k", status=ItemStatus.DONE)])
    outbox = Outbox(index)
    # When two dispatchers notice what happened, one after the other
    first = notice(index, outbox, [target])
    second = notice(index, outbox, [target])
    # Then three events were written (created twice, finished once), and no more
    assert (first, second) == (3, 0)
    assert sorted((r.job_id, r.event) for r in outbox.rows()) == [
        ("j1", "job.created"), ("j1", "job.finished"), ("j2", "job.created")]


def test_a_row_is_claimed_once_and_its_attempts_logged(index: Index) -> None:
    targets = TargetStore(index, NotifySettings())
    target = targets.add(TOPIC, tenant="a")
    index.create_job("j", model="m", input="file:///i/", output="file:///o/", keys=["k"],
                     tenant="a")
    outbox = Outbox(index)
    notice(index, outbox, [target])
    (row,) = outbox.due(limit=10)
    # When two dispatchers try to claim the same row
    assert outbox.claim(row, lease_s=30) is True
    assert outbox.claim(row, lease_s=30) is False
    assert outbox.due(limit=10) == []
    # And the attempt fails, to be retried at once, then succeeds
    outbox.settle(row, ok=False, status=500, error="HTTP 500", ms=1.0, retry_at=1000.0)
    (again,) = outbox.due(limit=10)
    assert again.attempts == 1
    outbox.settle(again, ok=True, status=200, error=None, ms=2.0, retry_at=None)
    # Then it is delivered, with both attempts in the log
    assert [(r.state, r.attempts) for r in outbox.rows()] == [("delivered", 2)]
    assert [(a.attempt, a.ok, a.status) for a in outbox.log()] == [(1, False, 500),
                                                                   (2, True, 200)]
    assert outbox.pending() == 0
