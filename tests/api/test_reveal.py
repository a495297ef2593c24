"""What errors and health checks reveal: which dependency is down, never its path or
host:port (the log has those)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.api.conftest import ApiServer, api_home, make_key


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port  # closed again: nothing listens there


@pytest.mark.parametrize("kind", ["redis at a closed port", "sqlite under a file"])
def test_a_queue_that_is_down_is_named_but_not_located(tmp_path: Path, kind: str) -> None:
    # Given an API whose queue cannot be reached or opened
    port = _dead_port()
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x")
    queue = (f"redis://127.0.0.1:{port}/0" if kind.startswith("redis")
             else f"sqlite:///{blocked}/queue.db")
    home = api_home(tmp_path / "home", GPUFLEET_QUEUE=queue)
    _, key = make_key(home, "t", "submit,read")
    server = ApiServer(home.settings)
    try:
        with server.client(key) as http:
            ready = http.get("/readyz")
            submitted = http.post("/v1/jobs", json={"items": ["a"], "model": "synthetic"})
    finally:
        server.stop()
        home.close()
    # Then readiness says the queue is down, and a submit says so with 503
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"queue": "unavailable", "index": "ok", "store": "ok"}
    assert submitted.status_code == 503
    assert submitted.json() == {"detail": "the queue is unavailable; try again shortly"}
    # And neither shows an address, a port or a path of the deployment
    for text in (ready.text, submitted.text):
        assert str(port) not in text and "127.0.0.1" not in text
        assert str(tmp_path) not in text and "redis://" not in text
