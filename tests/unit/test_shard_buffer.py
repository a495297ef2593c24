"""The writer's buffer for shard-mode tasks: a task's outcomes wait for the rest of its
delivery, per-item tasks pass straight through, a task whose lease is gone is let go, and
a shard is written all or nothing."""

from __future__ import annotations

import json
from pathlib import Path

from gpufleet.domain import ItemResult, ItemStatus, Task
from gpufleet.queue import Lease
from gpufleet.store import open_location
from gpufleet.worker.ledger import Run
from gpufleet.worker.result_shards import ShardBuffer, put_shard, shard_name
from gpufleet.worker.writer import Outcome


def _run(tmp_path: Path, n: int, *, results: str | None = "shards") -> Run:
    keys = tuple(f"k{i}" for i in range(n))
    task = Task(job="j", keys=keys, input="file:///in/", output="file:///out/",
                results=results)
    location = open_location(tmp_path.as_uri() + "/")
    return Run(Lease(id="1", body=task.encode(), receives=1, token="t"), task, location,
               location, keys=keys)


def _outcome(run: Run, key: str, transient: str | None = None) -> Outcome:
    return Outcome(run, key, ItemResult("j", key, ItemStatus.DONE), transient=transient)


def test_a_shard_tasks_outcomes_wait_for_the_rest_of_its_delivery(tmp_path: Path) -> None:
    buffer = ShardBuffer()
    shard, single, lost = _run(tmp_path, 3), _run(tmp_path, 2, results=None), _run(tmp_path, 3)
    # Two of three outcomes of a shard task, and a per-item task's: only the latter pass
    now, complete = buffer.hold([_outcome(shard, "k0"), _outcome(shard, "k1"),
                                 _outcome(single, "k0"), _outcome(lost, "k0")])
    assert [o.run for o in now] == [single] and complete == [] and buffer.held() == 3
    # The third completes the task: all three come out together
    now, complete = buffer.hold([_outcome(shard, "k2")])
    assert now == [] and [[o.key for o in c] for c in complete] == [["k0", "k1", "k2"]]
    # A task whose lease is lost is let go at once, to be counted out
    lost.released = True
    _, complete = buffer.hold([])
    assert [[o.run for o in c] for c in complete] == [[lost]] and buffer.held() == 0


def test_a_shard_is_written_whole_or_its_task_is_retried_whole(tmp_path: Path) -> None:
    run = _run(tmp_path, 2)
    # One transient failure: nothing written, every outcome of the task transient
    failing = [_outcome(run, "k0"), _outcome(run, "k1", transient="fetch k1: timeout")]
    put_shard(failing, "m")
    assert all(o.transient for o in failing)
    assert not (tmp_path / shard_name(run.keys)).exists()
    # None: one JSONL object under the name of its keys, in key order
    put_shard([_outcome(run, "k1"), _outcome(run, "k0")], "m")
    lines = (tmp_path / shard_name(run.keys)).read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["k0", "k1"]
    assert shard_name(("k1", "k0")) == shard_name(run.keys)
