"""What `submit --wait`'s progress bar says a job waits for, from the index."""

from __future__ import annotations

from pathlib import Path

from gpufleet.domain import ItemResult, ItemStatus
from gpufleet.index import Index
from gpufleet.waiting import phase


def test_the_bar_says_what_the_job_is_waiting_for(tmp_path: Path) -> None:
    index = Index(f"sqlite:///{tmp_path / 'index.db'}")
    index.create_job("j1", model="m", input="i", output="o", keys=["a", "b"])
    # No worker yet, then one loading the model, then one busy with another job
    assert phase(index, index.job("j1")) == "starting workers"
    index.worker_seen("w1", host="h", pid=1, model="m", state="booting")
    assert phase(index, index.job("j1")) == "loading the model"
    index.worker_seen("w1", host="h", pid=1, model="m", state="busy")
    assert phase(index, index.job("j1")) == "waiting for a worker"
    # A worker takes one of its tasks: running, then finished
    index.take_up("j1")
    assert phase(index, index.job("j1")) == "running"
    index.record([ItemResult(job="j1", key=k, status=ItemStatus.DONE) for k in ("a", "b")])
    assert phase(index, index.job("j1")) == "succeeded"
    index.close()
