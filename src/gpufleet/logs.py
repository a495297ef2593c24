"""Where log lines go and what they look like: Rich on a terminal, JSON lines elsewhere.

A person at a terminal reads coloured, aligned lines. A file, journald, a container
runtime or a log collector reads one JSON object per line: time (UTC, ISO 8601),
level, the process's role (the command: worker, controller, api, submit...), the
worker id, the job, task and item a line is about when it says, the logger and the
message; a traceback stays inside its record, so one event is one line.
``GPUFLEET_LOG_FORMAT`` (auto, json, text) and ``GPUFLEET_LOG_LEVEL`` (debug, info,
warning, error; ``--log-format`` and ``--log-level`` set them) choose.

Ids reach a record two ways: ``bind`` for what holds for the whole process (its role,
its worker id), and ``extra={"job": ...}`` on a call for what one line is about.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from rich.console import Console
from rich.logging import RichHandler

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("auto", "json", "text")
CONTEXT = ("worker", "job", "task", "item")  # read from a record's extra, when given
_bound: dict[str, str] = {}


def bind(**fields: str) -> None:
    """Fields every later record of this process carries (role, worker)."""
    _bound.update(fields)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(), **_bound}
        for name in CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value
        doc["logger"] = record.name
        doc["message"] = record.getMessage()
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure(*, level: str | int, fmt: str = "auto", stream: IO[str] | None = None,
              console: Console | None = None) -> None:
    """Send this process's log records to stream (stderr), as fmt says."""
    stream = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    handler: logging.Handler
    if as_json:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    else:
        handler = RichHandler(console=console or Console(file=stream), show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
