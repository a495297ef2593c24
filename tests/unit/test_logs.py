"""Logs a machine can read: one JSON object per line, ids as fields, a traceback inside its
record; Rich for a person at a terminal."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from gpufleet import logs
from gpufleet.config import Settings
from gpufleet.errors import ConfigError


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, dict(logs._bound))
    stream = io.StringIO()  # not a terminal: "auto" means JSON
    logs.configure(level="info", fmt="auto", stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logs._bound.clear()
    logs._bound.update(saved[2])


def test_each_record_is_one_json_line_with_its_ids(captured: io.StringIO) -> None:
    logs.bind(role="worker", worker="host-1-ab12")
    log = logging.getLogger("gpufleet.test")
    log.info("task of job %s goes back", "j1", extra={"job": "j1"})
    log.debug("not at info")
    try:
        raise RuntimeError("GPU fell off\nthe bus")
    except RuntimeError:
        log.exception("inference failed")
    lines = captured.getvalue().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert {k: first[k] for k in ("level", "role", "worker", "job", "logger", "message")} == {
        "level": "info", "role": "worker", "worker": "host-1-ab12", "job": "j1",
        "logger": "gpufleet.test", "message": "task of job j1 goes back"}
    assert first["time"].endswith("+00:00")
    # And a traceback, newlines and all, stays inside its one record
    assert second["level"] == "error"
    assert "RuntimeError: GPU fell off\nthe bus" in second["exception"]


def test_bad_log_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GPUFLEET_LOG_LEVEL": "loud", "GPUFLEET_LOG_FORMAT": "xml"})
    assert str(caught.value).splitlines() == [
        "GPUFLEET_LOG_LEVEL='loud': expected one of debug, info, warning, error",
        "GPUFLEET_LOG_FORMAT='xml': expected one of auto, json, text"]
