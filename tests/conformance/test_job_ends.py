"""Every job ends, on every stack: interrupted submissions are finished by the next process
that looks, and the sweeper repairs or fails jobs whose pending items have no task left.

Stacks: the embedded default (SQLite index and queue), Redis Streams with PostgreSQL, and
SQS (moto) with PostgreSQL. The index runs on a clock the tests move.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpufleet.config import Settings
from gpufleet.domain import Task
from gpufleet.enqueuing import finish_interrupted, new_enqueuer_id
from gpufleet.index import Index
from gpufleet.index.enqueue_marks import EnqueueMarks
from gpufleet.index.migrate import upgrade
from gpufleet.queue import TaskQueue, open_queue
from gpufleet.queue.sqs import ensure_queue_pair
from tests.conformance.backends import InProcessMoto, fresh_name
from tests.servers import RedisServer

MODEL = "synthetic"
LEASE_S = 30.0


@dataclass
class Stack:
    settings: Settings
    index: Index
    now: list[float]

    def queue(self) -> TaskQueue:
        return open_queue(self.settings.queue, name=MODEL)

    def advance(self, seconds: float) -> None:
        self.now[0] += seconds


@pytest.fixture(params=["embedded", "redis+postgres", "sqs+postgres"])
def stack(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    home = tmp_path / "home"
    queue = db = ""
    if request.param != "embedded":
        db = request.getfixturevalue("postgres_url")
        upgrade(db)
    if request.param == "redis+postgres":
        server: RedisServer = request.getfixturevalue("redis_server")
        queue = f"{server.url}?namespace={fresh_name('jobs-')}"
    elif request.param == "sqs+postgres":
        moto: InProcessMoto = request.getfixturevalue("in_process_moto")
        for name, value in moto.env(str(tmp_path)).items():
            monkeypatch.setenv(name, value)
        queue = f"sqs://{fresh_name('jobs-')}"
        ensure_queue_pair(queue, max_receives=5)
    settings = Settings(home=home, queue=queue, db=db, chunk_size=2)
    now = [1_000_000.0]
    index = Index(settings.db, clock=lambda: now[0])
    yield Stack(settings, index, now)
    index.close()


def drain(queue: TaskQueue) -> Counter[str]:
    """Receive and ack every task; how many times each key was in one."""
    seen: Counter[str] = Counter()
    while leases := queue.receive(10, visibility_timeout_s=60):
        for lease in leases:
            seen.update(Task.decode(lease.body).keys)
            queue.ack(lease)
    return seen


def start_submission(stack: Stack, keys: list[str], *, enqueued: int, enqueuer: str) -> str:
    """The state a `gpufleet submit` leaves when it is killed after enqueueing `enqueued`
    keys: the job and its items recorded, a mark, and a lease it no longer extends."""
    job = stack.index.create_job("job-1", model=MODEL, input="file:///in/",
                                 output="file:///out/", keys=keys, enqueuer=enqueuer,
                                 enqueuer_lease_s=LEASE_S)
    marks = EnqueueMarks(stack.index)
    claim = marks.held(job.id, enqueuer)
    first = marks.pending_keys(claim, limit=enqueued)
    queue = stack.queue()
    queue.enqueue([Task(job.id, tuple(first[i:i + 2]), job.input, job.output).encode()
                   for i in range(0, len(first), 2)])
    queue.close()
    assert marks.advance(claim, first[-1], lease_s=LEASE_S) is not None
    return job.id


def test_an_interrupted_submission_is_finished_by_the_next_process_that_looks(
        stack: Stack) -> None:
    # Given a submission of 451 keys killed on another machine after 100 were enqueued
    keys = [f"k{i:04d}.jpg" for i in range(451)]
    job = start_submission(stack, keys, enqueued=100, enqueuer="elsewhere/123/abcdef")
    # When a process looks while the submitter's lease still runs, it leaves it alone
    assert finish_interrupted(stack.settings, stack.index) == []
    # And when one looks after the lease ran out, it enqueues the rest
    stack.advance(LEASE_S + 1)
    assert finish_interrupted(stack.settings, stack.index) == [job]
    # Then every key is on the queue exactly once, and the job is fully queued
    queue = stack.queue()
    try:
        assert drain(queue) == Counter(keys)
    finally:
        queue.close()
    assert EnqueueMarks(stack.index).expired() == []
    assert finish_interrupted(stack.settings, stack.index) == []
    assert stack.index.job(job).counts.pending == 451


def test_a_submitter_that_died_on_this_machine_is_taken_over_at_once(tmp_path: Path) -> None:
    # Given a submission killed on this machine (its process has exited), lease still running
    settings = Settings(home=tmp_path / "home", chunk_size=2)
    now = [1_000_000.0]
    stack = Stack(settings, Index(settings.db, clock=lambda: now[0]), now)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = new_enqueuer_id().split("/")[0]
    keys = [f"k{i}" for i in range(9)]
    job = start_submission(stack, keys, enqueued=4, enqueuer=f"{host}/{dead}/abcdef")
    # When the next process looks, at once, then it finishes the job
    assert finish_interrupted(settings, stack.index) == [job]
    queue = stack.queue()
    assert drain(queue) == Counter(keys)
    queue.close()
    stack.index.close()
