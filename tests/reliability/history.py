"""What a run did and what it saw: the history the checker judges.

Submitted: each submission's input folder and item keys, and the job id when its
submitter said it (a killed submitter says nothing; its job, if any, is found by
its input). Observed: the jobs, item rows and result objects the system holds,
read straight from the index and the results folder, once when every job has
ended and once after every worker is gone, so a write after the end shows.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from gpufleet.index import Index
from gpufleet.index.schema import jobs


@dataclass
class Submission:
    """One `gpufleet submit`: its own input folder, so its job can be found by it."""

    input: str  # the folder URI given as --input
    keys: list[str]
    proc: subprocess.Popen[bytes] | None = None
    job: str | None = None  # what the submitter printed
    killed: bool = False  # by the nemesis: it may or may not have created its job

    def settle(self) -> None:
        """Wait for the submitter and read its answer."""
        if self.proc is None:
            return
        out, _ = self.proc.communicate(timeout=300)
        if self.proc.returncode == 0:
            self.job = out.decode().strip()


@dataclass(frozen=True)
class Row:
    status: str
    worker: str | None
    finished_at: float | None


@dataclass
class Observation:
    """The system's state at one moment."""

    jobs: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (state, input)
    rows: dict[str, dict[str, list[Row]]] = field(default_factory=dict)  # job -> key -> rows
    objects: dict[str, dict[str, bytes]] = field(default_factory=dict)  # job -> name -> body
    litter: int = 0  # temporary files a killed writer left (not results)
    requeued: dict[str, int] = field(default_factory=dict)  # job -> the sweeper's repairs

    def unfinished(self) -> list[str]:
        return [j for j, (state, _) in self.jobs.items()
                if state not in ("succeeded", "partial", "failed", "cancelled")]


def observe(db: str, results: Path) -> Observation:
    seen = Observation()
    index = Index(db)
    try:
        for job in index.jobs():
            seen.jobs[job.id] = (job.state.value, job.input)
            rows: dict[str, list[Row]] = {}
            for r in index.iter_results(job.id):
                rows.setdefault(r.key, []).append(
                    Row(r.status.value, r.worker, r.finished_at))
            seen.rows[job.id] = rows
        with index.transaction() as conn:
            seen.requeued = {job_id: n for job_id, n in conn.execute(
                select(jobs.c.id, jobs.c.requeues)) if n}
    finally:
        index.close()
    for job_id in seen.jobs:
        folder = results / job_id
        found: dict[str, bytes] = {}
        for dirpath, _, filenames in os.walk(folder):
            for name in filenames:
                path = Path(dirpath) / name
                if name.startswith(".tmp-"):
                    seen.litter += 1
                    continue
                found[path.relative_to(folder).as_posix()] = path.read_bytes()
        seen.objects[job_id] = found
    return seen


def parse_object(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
