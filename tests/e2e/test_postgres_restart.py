"""A crash of PostgreSQL right after a worker acked its tasks: their results survive it.

A worker acks a task once its results are recorded in the index, so a commit the
index said was made must outlive a crash of the database. These tests run a
PostgreSQL of their own, tuned as an operator might tune for throughput
(``synchronous_commit=off``: commits acknowledged before their WAL is written) and
with the WAL writer slowed, so any commit not made durable on its own is still
unwritten when the server is crashed (``pg_ctl stop -m immediate``). Before the fix
(issue 11) the results of the last tasks vanished with the crash while their tasks
were already acked: the job sat with pending items and no task anywhere until the
sweeper re-enqueued them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.domain import ItemResult, ItemStatus
from gpufleet.index import Index
from gpufleet.index.migrate import upgrade
from gpufleet.models.base import canonical_spec
from gpufleet.queue import QueueDepth, open_queue
from tests.conftest import Home, write_files
from tests.servers import PostgresServer, RedisServer, running_postgres

MODEL = "synthetic?item_ms=2"
# The longest the WAL writer may wait (10 s): a commit that is not flushed by its own
# transaction stays unwritten for the whole test, so losing it is not left to chance.
SLOW_WAL = {"wal_writer_delay": "10000ms"}


@pytest.fixture
def crashable_postgres() -> Iterator[PostgresServer]:
    """A cluster of this test's own, so crashing it disturbs no other test."""
    with running_postgres(settings=SLOW_WAL) as server:
        yield server


def _crash_and_restart(pg: PostgresServer) -> None:
    pg.stop()  # -m immediate: no shutdown checkpoint, as if the server were killed
    pg.start()


def _statuses(url: str, job: str) -> Counter[str]:
    index = Index(url)
    try:
        return Counter(r.status for r in index.iter_results(job))
    finally:
        index.close()


def test_recorded_results_survive_a_crash_of_postgresql(
        crashable_postgres: PostgresServer) -> None:
    # Given a job in the index
    url = crashable_postgres.create_database()
    upgrade(url)
    index = Index(url)
    keys = [f"k{i}" for i in range(8)]
    try:
        index.create_job("job-1", model=MODEL, input="file:///in/", output="file:///out/",
                         keys=keys)
        # When a worker records its results (then would ack their task), and the server
        # crashes at once
        index.record([ItemResult(job="job-1", key=k, status=ItemStatus.DONE, worker="w",
                                 started_at=1.0, finished_at=2.0) for k in keys])
    finally:
        index.close()
    _crash_and_restart(crashable_postgres)
    # Then the job and every result are still there
    assert _statuses(url, "job-1") == Counter(done=len(keys))


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, its writes kept in an append-only file."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    server.stop()


def _job_on(home: Home, tmp_path: Path, env: dict[str, str], model: str, count: int) -> str:
    """`gpufleet init`, then a job of count items submitted, on the backends env names."""
    home.run("init", **env)
    keys = write_files(tmp_path / "in", count)
    (home.path / "manifest.txt").write_text("\n".join(keys) + "\n")
    return home.run("submit", home.path / "manifest.txt", "--input",
                    (tmp_path / "in").as_uri() + "/", "--model", model, **env).stdout.strip()


def test_a_crash_after_the_last_ack_leaves_the_job_finished(
        home: Home, tmp_path: Path, crashable_postgres: PostgresServer,
        redis: RedisServer) -> None:
    # Given a job of 160 items (20 tasks) on Redis, indexed in PostgreSQL, and one worker
    env = {"GPUFLEET_QUEUE": redis.url, "GPUFLEET_DB": crashable_postgres.create_database(),
           "GPUFLEET_CHUNK_SIZE": "8"}
    job = _job_on(home, tmp_path, env, MODEL, 160)
    queue = open_queue(redis.url, name=canonical_spec(MODEL))
    home.spawn("worker", "--model", MODEL, "--max-idle", "30", **env)
    # When every task has been acked (nothing queued, delayed or in flight), PostgreSQL
    # crashes at once and comes back
    empty = QueueDepth(queued=0, in_flight=0, dead=0)
    home.wait_for(lambda: queue.depth() == empty, what="every task acked")
    _crash_and_restart(crashable_postgres)
    # Then every item is still done: nothing is owed to the sweeper
    assert _statuses(env["GPUFLEET_DB"], job) == Counter(done=160), home.logs()
    assert queue.depth() == empty
    queue.close()


def test_a_job_outlives_an_outage_of_postgresql_longer_than_its_retries(
        home: Home, tmp_path: Path, crashable_postgres: PostgresServer,
        redis: RedisServer) -> None:
    # Given a job under way on Redis + PostgreSQL, with leases and retries so short that an
    # outage of 12 s outlasts every delivery a task is allowed (issue 11, item 3)
    env = {"GPUFLEET_QUEUE": redis.url, "GPUFLEET_DB": crashable_postgres.create_database(),
           "GPUFLEET_CHUNK_SIZE": "4", "GPUFLEET_MAX_RECEIVES": "2",
           "GPUFLEET_VISIBILITY_TIMEOUT_S": "2"}
    model = "synthetic?item_ms=50"
    job = _job_on(home, tmp_path, env, model, 120)
    home.spawn("worker", "--model", model, "--max-idle", "20", **env)
    home.wait_for(lambda: _statuses(env["GPUFLEET_DB"], job)["done"] >= 8,
                  what="the first results")
    # When PostgreSQL goes away for 12 s and comes back
    crashable_postgres.stop()
    time.sleep(12)
    crashable_postgres.start()
    # Then the job ends with every item done: nothing dead-lettered, nothing stranded
    home.wait_for(lambda: _statuses(env["GPUFLEET_DB"], job) == Counter(done=120),
                  what="every item done", timeout_s=180)
    queue = open_queue(redis.url, name=canonical_spec(model))
    assert queue.depth().dead == 0, home.logs()
    # And the worker stopped taking tasks while the index was away, as it said
    assert "the index is unreachable: not receiving tasks" in " ".join(home.logs().split())
    queue.close()
