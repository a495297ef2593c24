"""Bulk exports of a real embedded job: three formats read back and compared with the
index; parts; a queued job refused; reading and streaming batch by batch."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from gpufleet.export import NotExportable, export_job, read_batches, stream
from gpufleet.index import Index
from gpufleet.jobs import JobRequest, create_job
from gpufleet.store import open_location
from gpufleet.worker.observer import Observer
from tests.conftest import Home
from tests.pipeline_jobs import MODEL, submit_files
from tests.pipeline_jobs import observed_pipeline as pipeline


def _finished_job(home: Home) -> str:
    job_id, _ = submit_files(home, items=23, missing=2)
    pipeline(home, Observer()).run(stop=threading.Event(), max_idle_s=0.5)
    return job_id


def _expected(index: Index, job_id: str) -> list[dict[str, Any]]:
    """What the index holds for each item, as export rows."""
    output = index.job(job_id).output.rstrip("/")
    return [{"key": i.key, "status": i.status.value, "error": i.error, "attempts": i.attempts,
             "tags": [{"id": t.id, "label": t.label, "score": t.score} for t in i.tags],
             "result": f"{output}/{job_id}/{i.key}.json"}
            for i in index.iter_results(job_id)]


def _compared(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: r[k] for k in ("key", "status", "error", "attempts", "tags", "result")}
            for r in rows]


def _read(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if fmt == "csv":
        with path.open(newline="") as f:
            return [{**r, "attempts": int(r["attempts"]), "error": r["error"] or None,
                     "tags": json.loads(r["tags"])} for r in csv.DictReader(f)]
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_finished_job_exports_to_parts_that_read_back_as_the_index(
        home: Home, tmp_path: Path, fmt: str) -> None:
    # Given a job run by a real pipeline: 23 items done, 2 failed (missing)
    job_id = _finished_job(home)
    index = home.index()
    # When it is exported in parts of at most 10 rows, read 4 at a time
    parts = export_job(index, job_id, open_location(str(tmp_path / "out")), fmt=fmt,
                       part_rows=10, batch_rows=4)
    # Then there are three parts, named in order, and together they are the index's rows
    names = [f"{job_id}-{n:05d}.{fmt}" for n in range(3)]
    assert parts == [(tmp_path / "out" / name).as_uri() for name in names]
    read = [_read(tmp_path / "out" / name, fmt) for name in names]
    assert [len(r) for r in read] == [10, 10, 5]
    rows = [row for part in read for row in part]
    assert _compared(rows) == _expected(index, job_id)
    assert {r["status"] for r in rows} == {"done", "failed"}
    assert all(len(r["tags"]) == 5 for r in rows if r["status"] == "done")


def test_the_cli_exports_and_a_queued_job_is_refused_in_one_line(home: Home,
                                                                 tmp_path: Path) -> None:
    # Given a finished job and a queued one
    job_id = _finished_job(home)
    queued = create_job(home.settings, home.index(), JobRequest(
        items=["a.bin"], input=(tmp_path / "in").as_uri() + "/", model=MODEL))
    # When each is exported with the CLI
    done = home.json("export", job_id, "--format", "parquet", "--output", tmp_path / "x")
    refused = home.run("export", queued.id, "--output", tmp_path / "x", check=False)
    # Then the first is one file of every row, the second one clear line
    assert done["files"] == [(tmp_path / "x" / f"{job_id}-00000.parquet").as_uri()]
    assert pq.read_table(tmp_path / "x" / f"{job_id}-00000.parquet").num_rows == 25
    assert refused.returncode == 1
    assert " ".join(refused.stderr.split()) == (  # (the console wraps it at 80 columns)
        f"error: job {queued.id} is queued: no results yet; export it once it runs")


def test_a_running_job_exports_its_pending_items_as_pending(home: Home) -> None:
    # Given a job none of whose items has run, but which a worker has taken up
    job_id, keys = submit_files(home, items=3)
    index = home.index()
    index.take_up(job_id)
    # When it is read for export
    rows = [row for batch in read_batches(index, job_id) for row in batch]
    # Then each item is there, pending, with no tags and no result object
    assert [(r[1], r[2], r[6], r[7]) for r in rows] == [(k, "pending", None, []) for k in keys]
    with pytest.raises(NotExportable):
        read_batches(index, submit_files(home, items=1)[0])


def test_reading_and_streaming_hold_one_batch_at_a_time(home: Home) -> None:
    # Given a finished job of 25 items
    job_id = _finished_job(home)
    index = home.index()
    # When it is read 4 at a time: it is a lazy sequence of batches of at most 4 rows
    batches = read_batches(index, job_id, batch_rows=4)
    first = next(batches)
    assert len(first) == 4
    assert [len(b) for b in batches] == [4, 4, 4, 4, 4, 1]
    # And streaming yields one chunk per batch as it is read (and the file's end), never
    # the whole file at once
    seen: list[int] = []

    def counted() -> Any:
        for batch in read_batches(index, job_id, batch_rows=4):
            seen.append(len(batch))
            yield batch

    chunks = stream(counted(), "jsonl")
    assert next(chunks).count(b"\n") == 4 and seen == [4]
    assert next(chunks).count(b"\n") == 4 and seen == [4, 4]
    assert sum(c.count(b"\n") for c in chunks) == 17
