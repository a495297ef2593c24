"""Whether a job is cancelled, as a worker asks before starting each task: cheaply. The
same look tells the index the job is started, so it reads running, not queued."""

from __future__ import annotations

import time

from gpufleet.errors import GpufleetError
from gpufleet.index import Index

CHECK_EVERY_S = 2.0  # how stale a job's cancelled flag may be before it is read again
_MAX_JOBS = 10_000  # forget everything past this many jobs: memory stays bounded


class CancelledJobs:
    def __init__(self, index: Index) -> None:
        self.index = index
        self._checks: dict[str, tuple[float, bool]] = {}  # job -> (checked at, cancelled)

    def __contains__(self, job: str) -> bool:
        """Whether the job is cancelled, asked of the index at most every CHECK_EVERY_S."""
        now = time.monotonic()
        known = self._checks.get(job)
        if known is None or now - known[0] > CHECK_EVERY_S:
            try:
                known = (now, self.index.take_up(job))
            except GpufleetError:  # the index is down: work as usual, writes will retry
                known = (now, False)
            if len(self._checks) > _MAX_JOBS:
                self._checks.clear()
            self._checks[job] = known
        return known[1]
