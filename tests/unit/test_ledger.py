"""The ledger's two bounds: inputs in flight, and outcomes waiting for the writer."""

from __future__ import annotations

import threading

from gpufleet.domain import Task
from gpufleet.queue import Lease
from gpufleet.store import open_location
from gpufleet.worker.ledger import Ledger, Run


def _run(tmp_path, n: int) -> Run:  # type: ignore[no-untyped-def]
    keys = tuple(f"k{i}" for i in range(n))
    task = Task(job="j", keys=keys, input="file:///in/", output="file:///out/")
    location = open_location(tmp_path.as_uri() + "/")
    return Run(Lease(id="1", body=task.encode(), receives=1, token="t"), task, location,
               location, keys=keys)


def test_outcomes_waiting_to_be_written_free_room_for_inputs_up_to_the_backlog(tmp_path):
    ledger, stop = Ledger(4, backlog=8), threading.Event()
    runs = [_run(tmp_path, 4) for _ in range(4)]
    ledger.add(runs[0])
    assert ledger.wait_for_room(0, stop) == 0  # inputs at capacity
    ledger.outcomes_ready(4)
    assert ledger.wait_for_room(4, stop) == 4  # their outcomes are small: room again
    ledger.add(runs[1])
    ledger.outcomes_ready(4)
    ledger.add(runs[2])
    ledger.outcomes_ready(4)
    assert ledger.in_flight == 12
    assert ledger.wait_for_room(0, stop) == 0  # the backlog is full: the writer must catch up
    finished = ledger.count_out((runs[0], None) for _ in range(4))
    assert [s.run for s in finished] == [runs[0]] and finished[0].error is None
    assert ledger.wait_for_room(4, stop) == 4


def test_a_task_is_finished_once_all_its_items_are_written_with_its_first_error(tmp_path):
    ledger = Ledger(8)
    run = _run(tmp_path, 3)
    ledger.add(run)
    ledger.outcomes_ready(3)
    assert ledger.count_out([(run, None), (run, "store down")]) == []
    finished = ledger.count_out([(run, "later")])
    assert [(s.run, s.error) for s in finished] == [(run, "store down")]
    assert ledger.in_flight == 0
