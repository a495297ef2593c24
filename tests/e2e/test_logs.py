"""A worker's log, as a file or a collector gets it: JSON lines with its role and id."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import Home, write_files
from tests.servers import free_port


def _records(home: Home, *, only_logs: bool = True) -> list[dict[str, object]]:
    """The records of the processes' output; only_logs: every line is one (the API also
    prints where it listens, which is not a log record)."""
    lines = [line for path in sorted(home.path.glob("proc-*.log"))
             for line in path.read_text().splitlines() if line.strip()]
    if not only_logs:
        lines = [line for line in lines if line.startswith("{")]
    return [json.loads(line) for line in lines]


def test_a_worker_logs_json_lines_carrying_its_role_and_id(home: Home, tmp_path: Path) -> None:
    keys = write_files(tmp_path / "in", 20)
    (home.path / "m.txt").write_text("\n".join(keys) + "\n")
    home.run("submit", home.path / "m.txt", "--input", (tmp_path / "in").as_uri() + "/",
             "--model", "synthetic?item_ms=1")
    assert home.spawn("worker", "--model", "synthetic?item_ms=1",
                      "--max-idle", "1").wait(timeout=120) == 0
    records = _records(home)
    started = next(r for r in records if "bootstrapped" in str(r["message"]))
    assert (started["level"], started["role"]) == ("info", "worker")
    assert str(started["worker"]) in str(started["message"])
    assert {r["worker"] for r in records} == {started["worker"]}


def test_the_log_level_is_set_once_for_every_command(home: Home, tmp_path: Path) -> None:
    assert home.spawn("--log-level", "warning", "worker", "--model", "synthetic",
                      "--max-idle", "0.5").wait(timeout=60) == 0
    assert _records(home) == []  # a quiet worker with nothing to say at warning
    result = home.run("status", check=False, GPUFLEET_LOG_LEVEL="chatty")
    assert result.returncode == 1
    assert "GPUFLEET_LOG_LEVEL='chatty': expected one of debug, info, warning, error" in \
        result.stderr


def test_the_api_logs_each_request_without_its_query(home: Home) -> None:
    # Given an API process, its log a file
    port = free_port()
    api = home.spawn("api", "--port", str(port))
    home.wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), what="the API")
    # When a client follows a signed URL (the signature in its query), and probes a key
    _answers(f"http://127.0.0.1:{port}/v1/signed/j1/a.jpg?tenant=t&kid=k&expires=1"
             "&signature=SECRETSIGNATURE")
    _answers(f"http://127.0.0.1:{port}/v1/jobs?api_key=gfk_SECRETKEY")
    api.terminate()
    api.wait(timeout=30)
    # Then each request is one JSON record of the access log, naming its path only
    access = [r for r in _records(home, only_logs=False) if r["logger"] == "uvicorn.access"]
    assert any("GET /v1/signed/j1/a.jpg HTTP/1.1" in str(r["message"]) for r in access)
    assert any("GET /v1/jobs HTTP/1.1" in str(r["message"]) for r in access)
    assert all(r["role"] == "api" for r in access)
    text = "\n".join(p.read_text() for p in home.path.glob("proc-*.log"))
    assert "SECRET" not in text


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return False
    return True
