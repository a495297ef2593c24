"""The pipeline tells its observer every step, in lists; a failing observer stops nothing."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

from gpufleet.domain import ItemResult, ItemStatus, Task, WorkerState
from gpufleet.jobs import JobRequest, create_job
from gpufleet.models import load_tagger
from gpufleet.queue import open_queue
from gpufleet.store import open_location
from gpufleet.worker.io_pools import IoPools
from gpufleet.worker.ledger import Run
from gpufleet.worker.observer import Observer, Observers, Stage, TaskEnd
from gpufleet.worker.pipeline import Pipeline
from gpufleet.worker.writer import Outcome, ResultWriter
from tests.conftest import Home, write_files
from tests.pipeline_jobs import MODEL, observed_pipeline, submit_files


class Recorder(Observer):
    def __init__(self) -> None:
        self.started: list[Run] = []
        self.stages: Counter[Stage] = Counter()  # items seen per stage
        self.batches: list[tuple[int, int]] = []
        self.outcomes: Counter[str] = Counter()
        self.ended: Counter[TaskEnd] = Counter()
        self.states: set[WorkerState] = set()

    def task_started(self, run: Run) -> None:
        self.started.append(run)

    def stage(self, stage: Stage, runs: Sequence[Run], items: int, started: float,
              seconds: float) -> None:
        assert runs and seconds >= 0 and started > 0
        self.stages[stage] += items

    def batch(self, size: int, capacity: int) -> None:
        self.batches.append((size, capacity))

    def written(self, outcomes: Sequence[Outcome]) -> None:
        for o in outcomes:
            self.outcomes[o.result.status if o.result else "transient"] += 1

    def task_ended(self, run: Run, end: TaskEnd) -> None:
        self.ended[end] += 1

    def state(self, state: WorkerState) -> None:
        self.states.add(state)


class Broken(Observer):
    def stage(self, *args: object) -> None:
        raise RuntimeError("an observer with a bug")


def _run_job(home: Home, observer: Observer, *, items: int, missing: int) -> None:
    submit_files(home, items=items, missing=missing)
    observed_pipeline(home, observer).run(stop=threading.Event(), max_idle_s=0.5)


def test_every_item_passes_each_stage_and_every_task_ends_acked(home: Home) -> None:
    recorder = Recorder()
    _run_job(home, recorder, items=37, missing=3)

    tasks = len(recorder.started)
    assert tasks >= 1 and recorder.ended == {TaskEnd.ACKED: tasks}
    assert recorder.stages[Stage.FETCH] == 40  # every key is fetched, found or not
    assert recorder.stages[Stage.DECODE] == recorder.stages[Stage.INFER] == 37
    assert recorder.stages[Stage.WRITE] == 40
    assert recorder.outcomes == {ItemStatus.DONE: 37, ItemStatus.FAILED: 3}
    assert sum(size for size, _ in recorder.batches) == 37
    assert all(1 <= size <= capacity == 4 for size, capacity in recorder.batches)
    assert {WorkerState.BUSY, WorkerState.DRAINING} <= recorder.states


def test_an_observer_that_raises_is_logged_and_the_work_goes_on(home: Home) -> None:
    recorder = Recorder()
    _run_job(home, Observers([Broken(), recorder]), items=12, missing=0)
    assert recorder.outcomes == {ItemStatus.DONE: 12}
    [job] = home.index().jobs()
    assert job.counts.done == 12


class Books(Observer):
    """Each task told started, and each told ended with how."""

    def __init__(self) -> None:
        self.started: list[Run] = []
        self.ended: list[tuple[Run, TaskEnd]] = []

    def task_started(self, run: Run) -> None:
        self.started.append(run)

    def task_ended(self, run: Run, end: TaskEnd) -> None:
        self.ended.append((run, end))


def test_a_task_put_back_at_once_is_never_told_started(home: Home) -> None:
    # Given two tasks delivered before, so each must run alone: one waits its turn, the
    # other is put back on the queue at once (it never enters the pipeline)
    home.env["GPUFLEET_CHUNK_SIZE"] = "5"
    write_files(home.path / "in", 10)
    create_job(home.settings, home.index(), JobRequest(
        items=[f"item-{i:05d}.bin" for i in range(10)],
        input=(home.path / "in").as_uri() + "/", model=MODEL))
    queue = open_queue(home.settings.queue, name=MODEL)
    for lease in queue.receive(2, visibility_timeout_s=30):
        queue.release(lease, delay_s=0)
    # When a pipeline runs them
    books = Books()
    Pipeline(tagger=load_tagger(MODEL, home.settings), queue=queue, index=home.index(),
             settings=home.settings, worker_id="w-test", observer=books).run(
        stop=threading.Event(), max_idle_s=0.5)
    # Then every task told started is told ended, once, acked
    assert len(books.started) == 2
    assert sorted(map(id, books.started)) == sorted(id(run) for run, _ in books.ended)
    assert {end for _, end in books.ended} == {TaskEnd.ACKED}
    assert home.index().jobs()[0].counts.done == 10


def test_a_lease_found_gone_before_writing_is_told_lost(home: Home) -> None:
    # Given a task whose lease was last confirmed long ago and is gone (acked elsewhere)
    queue = open_queue(home.settings.queue, name=MODEL)
    task = Task("j", ("k",), "file:///in/", "file:///out/")
    queue.enqueue([task.encode()])
    [lease] = queue.receive(1, visibility_timeout_s=30)
    queue.ack(lease)
    location = open_location((home.path / "out").as_uri() + "/")
    run = Run(lease, task, location, location, keys=task.keys, confirmed_at=0.0)
    books = Books()
    writer = ResultWriter(index=home.index(), queue=queue, model=MODEL,
                          pools=IoPools("put"), lease_s=30,
                          on_index_down=lambda error: None, observer=books)
    # When its outcome is to be written
    writer.write([Outcome(run, "k", ItemResult(job="j", key="k", status=ItemStatus.DONE))])
    # Then nothing is written and the task is told lost
    assert run.released and books.ended == [(run, TaskEnd.LOST)]
    assert not (home.path / "out").exists() or not any((home.path / "out").iterdir())
