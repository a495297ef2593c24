"""Result writers of an SQLite index take turns through a file lock: across processes, across
threads, and never waiting for ever on a holder that stopped."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gpufleet.domain import ItemResult, ItemStatus, Tag
from gpufleet.errors import IndexUnavailable
from gpufleet.index import Index
from gpufleet.index.write_gate import WriteGate, write_gate

# A process that takes the gate's lock, says so, and keeps it until its input closes.
_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def _held_elsewhere(path: str) -> Iterator[Callable[[], None]]:
    """Another process holds the lock on path; call what this yields to make it let go."""
    with subprocess.Popen([sys.executable, "-c", _HOLDER, path], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        assert holder.stdout.readline() == "held\n"

        def let_go() -> None:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(timeout=10)

        try:
            yield let_go
        finally:
            holder.kill()


def test_a_writer_waits_for_another_process_and_starts_once_it_lets_go(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "index.db"), timeout_s=30)
    entered = threading.Event()

    def write() -> None:
        with gate.held():
            entered.set()

    with _held_elsewhere(gate.path) as let_go:
        writer = threading.Thread(target=write)
        writer.start()
        assert not entered.wait(0.3)  # the other process holds it
        let_go()
        assert entered.wait(10)
    writer.join(10)
    gate.close()


def test_a_holder_that_never_lets_go_is_an_unavailable_index_not_a_hang(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "index.db"), timeout_s=0.5)
    with _held_elsewhere(gate.path):
        started = time.monotonic()
        with pytest.raises(IndexUnavailable, match=r"held .*index\.db-writer"), gate.held():
            pass
        assert time.monotonic() - started >= 0.5
    with gate.held():  # and the gate is whole again once the other has gone
        pass
    gate.close()


def test_threads_of_one_process_write_one_at_a_time(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "index.db"), timeout_s=30)
    inside, most = 0, 0
    count = threading.Lock()

    def write() -> None:
        nonlocal inside, most
        for _ in range(50):
            with gate.held():
                with count:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0005)
                with count:
                    inside -= 1

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    gate.close()
    assert most == 1


def test_a_database_in_memory_has_no_gate(tmp_path: Path) -> None:
    assert write_gate(None, timeout_s=1) is None
    assert write_gate(":memory:", timeout_s=1) is None
    gate = write_gate(str(tmp_path / "index.db"), timeout_s=1)
    assert gate is not None and gate.path == str(tmp_path / "index.db-writer")


def test_recording_results_takes_the_gate(tmp_path: Path) -> None:
    index = Index(f"sqlite:///{tmp_path / 'index.db'}")
    try:
        index.create_job("j", model="m", input="i", output="o", keys=["a.jpg"])
        result = ItemResult(job="j", key="a.jpg", status=ItemStatus.DONE,
                            tags=(Tag("n01", "cat", 0.9),))
        with _held_elsewhere(str(tmp_path / "index.db-writer")) as let_go:
            recorder = threading.Thread(target=index.record, args=([result],))
            recorder.start()
            time.sleep(0.3)
            # waiting its turn
            assert [i.status for i in index.results("j")] == [ItemStatus.PENDING]
            let_go()
            recorder.join(10)
        assert [(i.status, [t.label for t in i.tags]) for i in index.results("j")] == [
            (ItemStatus.DONE, ["cat"])]
    finally:
        index.close()


def test_a_workers_own_row_waits_its_turn_too(tmp_path: Path) -> None:
    index = Index(f"sqlite:///{tmp_path / 'index.db'}")
    try:
        with _held_elsewhere(str(tmp_path / "index.db-writer")) as let_go:
            seen = threading.Thread(target=lambda: index.worker_seen(
                "w1", host="h", pid=1, model="m", state="ready"))
            seen.start()
            time.sleep(0.3)
            assert index.live_workers() == []
            let_go()
            seen.join(10)
        assert [w.id for w in index.live_workers()] == ["w1"]
    finally:
        index.close()
