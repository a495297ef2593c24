"""Watching for the end of a worker's machine: a spot interruption, a scale-in, a notice file.

Three sources, polled every GPUFLEET_NOTICE_POLL_S (5 s) by one thread:

- on EC2 (GPUFLEET_IMDS_URL set), ``spot/instance-action``: present two
  minutes before a spot instance is reclaimed, with the time it happens;
- on EC2, ``autoscaling/target-lifecycle-state`` = ``Terminated``: the Auto
  Scaling group is terminating this instance (scale-in); its lifecycle hook
  holds the instance until the worker has drained;
- locally (GPUFLEET_NOTICE_FILE set), the file's appearance; its content may be
  an instance-action document (``{"action": "terminate", "time": "...Z"}``),
  else the machine is assumed gone two minutes later.

The first notice is handed to ``on_notice`` once; the worker then stops
receiving and finishes what fits before the notice's time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gpufleet.config import FleetSettings
from gpufleet.errors import Unavailable
from gpufleet.worker.imds import Imds

log = logging.getLogger(__name__)
SPOT_WINDOW_S = 120.0  # EC2 gives a spot instance two minutes


@dataclass(frozen=True, slots=True)
class Notice:
    source: str  # spot, scale-in, file
    detail: str
    deadline: float | None  # wall-clock time the machine goes away; None: not announced

    @property
    def interruption(self) -> bool:
        """A spot reclaim (the capacity went away), not a scale-in we asked for."""
        return self.source in ("spot", "file")


def parse_instance_action(text: str, *, now: float) -> float:
    """The time in an instance-action document; two minutes from now if it has none."""
    try:
        doc = json.loads(text) if text.strip() else {}
        when = doc.get("time") if isinstance(doc, dict) else None
        if isinstance(when, str):
            return datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    return now + SPOT_WINDOW_S


class NoticeWatcher:
    def __init__(self, fleet: FleetSettings, on_notice: Callable[[Notice], None], *,
                 imds: Imds | None = None, clock: Callable[[], float] = time.time) -> None:
        self.on_notice, self.clock = on_notice, clock
        self.poll_s = fleet.notice_poll_s
        self.file = Path(fleet.notice_file) if fleet.notice_file else None
        self.imds = imds or (Imds(fleet.imds_url) if fleet.imds_url else None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notice", daemon=True)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.file is not None or self.imds is not None

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            notice = self.check()
            if notice is not None:
                log.warning("interruption notice (%s): %s", notice.source, notice.detail)
                self.on_notice(notice)
                return
            self._stop.wait(self.poll_s)

    def check(self) -> Notice | None:
        """One look at every source."""
        now = self.clock()
        if self.file is not None and self.file.exists():
            try:
                text = self.file.read_text(errors="replace")
            except OSError:
                text = ""
            return Notice("file", f"{self.file} appeared",
                          parse_instance_action(text, now=now))
        if self.imds is None:
            return None
        try:
            action = self.imds.get("spot/instance-action")
            if action is not None:
                return Notice("spot", action.strip(), parse_instance_action(action, now=now))
            target = self.imds.get("autoscaling/target-lifecycle-state")
        except Unavailable as exc:
            if not self._warned:
                log.warning("cannot poll for interruption notices: %s", exc)
                self._warned = True
            return None
        if target is not None and target.strip() == "Terminated":
            return Notice("scale-in", "the Auto Scaling group is terminating this instance",
                          None)
        return None
