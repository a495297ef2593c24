"""Queues are opened once: handles reused and bounded, and one tenant's many specs never
reach another tenant, even with few open files (distinct specs per tenant: test_quotas)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gpufleet.api.queues import QueueHandles
from gpufleet.queue import TaskQueue, open_queue
from tests.api.conftest import api_home, make_key
from tests.conftest import Home
from tests.servers import free_port

OPEN_FILES = 128  # what the API process may open, all told


def test_handles_are_reused_bounded_and_closed_only_once_let_go(tmp_path: Path) -> None:
    opened: list[TaskQueue] = []

    def opener(model: str) -> TaskQueue:
        opened.append(open_queue(f"sqlite:///{tmp_path / 'q.db'}", name=model))
        return opened[-1]

    handles = QueueHandles(opener, size=2)
    with handles.use("a") as a:
        with handles.use("a") as again:
            assert again is a  # reused, not reopened
        # When two more models are used while a is still in use, a is evicted...
        for model in ("b", "c"):
            with handles.use(model) as queue:
                queue.depth()
        assert handles.open_count() == 2
        # ...but a works until its user lets go
        assert a.depth().queued == 0
    assert len(opened) == 3
    # Then a was closed when let go, and the others stay open until the end
    with pytest.raises(Exception, match="closed"):
        a.depth()
    handles.close()
    with pytest.raises(Exception, match="closed"):
        opened[2].depth()


def _api_with_few_files(home: Home, port: int) -> subprocess.Popen[bytes]:
    code = ("import resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({OPEN_FILES}, {OPEN_FILES})); "
            f"sys.argv = ['gpufleet', 'api', '--port', '{port}']; "
            "from gpufleet.cli import main; main()")
    log = open(home.path / "api.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-c", code], env=home.env, stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).raise_for_status()
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((home.path / "api.log").read_text()) from None
            time.sleep(0.05)


def test_many_specs_of_one_tenant_leave_the_others_served_under_few_open_files(
        tmp_path: Path) -> None:
    # Given an API process limited to 128 open files, whose operator allows 100 specs per
    # tenant (each one a queue: three open files on SQLite)
    home = api_home(tmp_path, GPUFLEET_API_MAX_MODELS="100")
    _, x = make_key(home, "x", "submit,read,admin")
    _, y = make_key(home, "y", "submit,read")
    port = free_port()
    api = _api_with_few_files(home, port)
    url = f"http://127.0.0.1:{port}"
    try:
        # When tenant x submits jobs of 60 distinct specs, reading its fleet, dead letters
        # and the metrics after each
        codes: set[int] = set()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {x}"},
                          timeout=30) as http:
            for n in range(60):
                codes.add(http.post("/v1/jobs", json={
                    "items": ["a"], "model": f"synthetic?item_ms={n}"}).status_code)
                for path in ("/v1/fleet", "/v1/dlq", "/metrics"):
                    codes.add(http.get(path).status_code)
            fleet = http.get("/v1/fleet").json()
            files = len(os.listdir(f"/proc/{api.pid}/fd"))
        # Then every answer was a success, x sees its 60 models, and tenant y is served
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {y}"},
                          timeout=30) as http:
            theirs = http.post("/v1/jobs", json={"items": ["a"], "model": "synthetic"})
            ready = http.get("/readyz")
    finally:
        api.terminate()
        api.wait(timeout=30)
        home.close()
    assert codes <= {200, 201}, codes
    assert len(fleet["models"]) == 60
    assert theirs.status_code == 201 and ready.status_code == 200
    assert files < OPEN_FILES // 2, files
    assert "Too many open files" not in (home.path / "api.log").read_text()
