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

from gpufleet.config import Settings, TaskSettings
from gpufleet.domain import ItemResult, ItemStatus, Task
from gpufleet.enqueuing import finish_interrupted, new_enqueuer_id
from gpufleet.errors import ManifestError
from gpufleet.index import Index
from gpufleet.index.enqueue_marks import EnqueueMarks
from gpufleet.index.migrate import upgrade
from gpufleet.jobs import enqueue_job
from gpufleet.queue import TaskQueue, open_queue
from gpufleet.queue.sqs import ensure_queue_pair
from gpufleet.sources import submit_source as jobs_submit
from gpufleet.sweeper import Swept, sweep
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
    settings = Settings(home=home, queue=queue, db=db,
                        tasks=TaskSettings(chunk_size=2, max_requeues=2))
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
    settings = Settings(home=tmp_path / "home", tasks=TaskSettings(chunk_size=2))
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


def submit(stack: Stack, job_id: str, keys: list[str]) -> str:
    return enqueue_job(stack.settings, stack.index, job_id, keys, input="file:///in/",
                       output="file:///out/", model=MODEL).id


def test_the_sweeper_requeues_a_job_whose_tasks_were_lost_then_fails_it(stack: Stack) -> None:
    # Given a job of 7 items whose tasks were all lost from the queue (taken, never done)
    keys = [f"k{i}" for i in range(7)]
    job = submit(stack, "job-lost", keys)
    queue = stack.queue()
    try:
        assert drain(queue) == Counter(keys)
        # When the sweeper looks before the job has been idle for the quiet period
        quiet_s, limit = stack.settings.tasks.sweep_quiet_s, stack.settings.tasks.max_requeues
        # Then it leaves it alone
        assert sweep(stack.settings, stack.index, model=MODEL) == Swept()
        # And once the job has been idle that long, it enqueues its pending items again
        for attempt in range(limit):
            stack.advance(quiet_s + 1)
            assert sweep(stack.settings, stack.index, model=MODEL).requeued == [job]
            assert sweep(stack.settings, stack.index, model=MODEL) == Swept()  # idempotent
            assert drain(queue) == Counter(keys), attempt  # ... and they are lost again
        # And when the re-enqueues are used up, its items fail with the reason: it has ended
        stack.advance(quiet_s + 1)
        assert sweep(stack.settings, stack.index, model=MODEL).failed == {job: 7}
        ended = stack.index.job(job)
        assert (ended.state.value, ended.counts.failed) == ("failed", 7)
        [row, *_] = stack.index.results(job)
        assert f"after {limit} re-enqueue(s)" in row.error
    finally:
        queue.close()


def test_the_sweeper_waits_while_the_queue_holds_tasks(stack: Stack) -> None:
    # Given a job whose tasks were lost, and another job's task still queued
    job = submit(stack, "job-lost", ["a", "b"])
    queue = stack.queue()
    drain(queue)
    submit(stack, "job-queued", ["c"])
    # When the sweeper looks after the quiet period, then it does nothing: a task exists
    stack.advance(stack.settings.tasks.sweep_quiet_s + 1)
    assert sweep(stack.settings, stack.index, model=MODEL) == Swept()
    # And once the queue is empty, the stranded job is enqueued again
    drain(queue)
    stack.index.record([ItemResult(job="job-queued", key="c", status=ItemStatus.DONE)])
    assert sweep(stack.settings, stack.index, model=MODEL).requeued == [job]
    queue.close()


def test_the_sweeper_fails_the_items_of_a_dead_letter_nobody_recorded(stack: Stack) -> None:
    # Given a job of two tasks: one done, one dead-lettered by a worker that could not
    # record its items as failed (the index was down)
    job = submit(stack, "job-dead", ["a", "b", "c", "d"])
    queue = stack.queue()
    leases = queue.receive(10, visibility_timeout_s=60)
    assert len(leases) == 2
    for lease in leases:
        task = Task.decode(lease.body)
        if "a" in task.keys:
            stack.index.record([ItemResult(job=job, key=k, status=ItemStatus.DONE)
                                for k in task.keys])
            queue.ack(lease)
        else:
            queue.dead_letter(lease, error="decoder crashed")
    # When the sweeper looks after the quiet period
    stack.advance(stack.settings.tasks.sweep_quiet_s + 1)
    swept = sweep(stack.settings, stack.index, model=MODEL)
    # Then the dead letter's items failed with its error, nothing was enqueued again
    assert (swept.failed, swept.requeued) == ({job: 2}, [])
    ended = stack.index.job(job)
    assert (ended.state.value, ended.counts.done, ended.counts.failed) == ("partial", 2, 2)
    errors = {r.key: r.error for r in stack.index.results(job)}
    assert errors["c"] == errors["d"] == "dead-lettered: decoder crashed"
    assert queue.depth().queued == 0
    queue.close()


def test_a_manifest_refused_at_its_last_line_leaves_no_job_and_no_task(tmp_path: Path) -> None:
    # Given a manifest of 20,000 keys read as a stream, whose last line is hostile
    settings = Settings(home=tmp_path / "home")
    manifest = tmp_path / "keys.txt"
    manifest.write_text("".join(f"k{i}.jpg\n" for i in range(20_000)) + "../secret\n")
    index = Index(settings.db)
    # When it is submitted, then it is refused naming that line
    with pytest.raises(ManifestError, match="line 20001"):
        jobs_submit(settings, index, manifest, model=MODEL)
    # And no job, no item and no task exists
    assert index.jobs() == []
    queue = open_queue(settings.queue, name=MODEL)
    assert queue.depth().queued == 0
    queue.close()
    index.close()
