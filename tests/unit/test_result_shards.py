"""Shard-mode jobs end to end: one JSONL object per task instead of one per item, every
item still in the index, a redelivered task rewriting the same shard, exports and the
API's downloads answering for them."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import update

from gpufleet.domain import Task
from gpufleet.export import read_batches
from gpufleet.index.schema import items
from gpufleet.jobs import JobRequest, create_job
from gpufleet.queue import open_queue
from gpufleet.worker.observer import Observer
from gpufleet.worker.result_shards import shard_name
from tests.api.conftest import ApiServer, api_home, make_key, tenant_input
from tests.conftest import Home, write_files
from tests.pipeline_jobs import MODEL, observed_pipeline


def _shards(folder: Path) -> dict[str, list[dict[str, Any]]]:
    return {p.name: [json.loads(line) for line in p.read_text().splitlines()]
            for p in sorted((folder / "shards").glob("*.jsonl"))}


def _run(home: Home) -> None:
    observed_pipeline(home, Observer()).run(stop=threading.Event(), max_idle_s=0.5)


def test_a_shard_job_writes_one_jsonl_object_per_task_and_indexes_every_item(
        home: Home) -> None:
    # Given a job of 23 files and 2 missing keys, results as shards, 10 items a task
    home.env["GPUFLEET_CHUNK_SIZE"] = "10"
    keys = [*write_files(home.path / "in", 23), "missing-0.bin", "missing-1.bin"]
    job = create_job(home.settings, home.index(), JobRequest(
        items=keys, input=(home.path / "in").as_uri() + "/", model=MODEL, results="shards"))
    assert home.index().job(job.id).results == "shards"
    # When a real pipeline runs it
    _run(home)
    # Then there are three shards, named by their keys, and no object per item
    out = home.path / "buckets" / "results" / job.id
    shards = _shards(out)
    assert sorted(shards) == sorted(shard_name(sorted(keys)[i:i + 10]).split("/")[1]
                                    for i in range(0, 25, 10))
    assert not list(out.glob("*.json"))
    # And every item is in exactly one shard, as the index records it
    lines = sorted((r for rows in shards.values() for r in rows), key=lambda r: r["key"])
    indexed = list(home.index().iter_results(job.id))
    assert [(r["key"], r["status"], r["tags"]) for r in lines] == [
        (i.key, i.status.value, [{"id": t.id, "label": t.label, "score": t.score}
                                 for t in i.tags]) for i in indexed]
    assert home.index().job(job.id).state.value == "partial"  # the two missing failed
    # And an export lists each item with no per-item result object
    rows = [row for batch in read_batches(home.index(), job.id) for row in batch]
    assert len(rows) == 25 and all(row[6] is None for row in rows)

    # When a task is delivered again as if its rows had never been recorded
    first = sorted(keys)[:10]
    with home.index().transaction() as conn:
        conn.execute(update(items).where(items.c.job_id == job.id, items.c.key.in_(first))
                     .values(status="pending"))
    queue = open_queue(home.settings.queue, name=MODEL)
    queue.enqueue([Task(job.id, tuple(first), job.input, job.output,
                        results="shards").encode()])
    queue.close()
    _run(home)
    # Then it rewrote the same shard: the same three, each item once
    again = _shards(out)
    assert sorted(again) == sorted(shards)
    assert sorted(r["key"] for rows in again.values() for r in rows) == sorted(keys)
    assert home.index().job(job.id).counts.pending == 0


def test_the_api_says_where_a_shard_jobs_results_are(tmp_path: Path) -> None:
    # Given a tenant's shard-mode job submitted through the API, run by a real pipeline
    home = api_home(tmp_path / "home")
    keys = write_files(tenant_input(home, "a") / "photos", 3)
    _, key = make_key(home, "a", "submit,read")
    server = ApiServer(home.settings)
    try:
        with server.client(key) as http:
            submitted = http.post("/v1/jobs", json={"items": keys, "input": "photos/",
                                                    "model": MODEL, "results": "shards"})
            assert submitted.status_code == 201, submitted.text
            job = submitted.json()["job"]
            _run(home)
            # When its view, an item, its download and the job's export are asked for
            view = http.get(f"/v1/jobs/{job}").json()
            item = http.get(f"/v1/items/{job}/{keys[0]}")
            download = http.get(f"/v1/items/{job}/{keys[0]}/download")
            export = http.get(f"/v1/jobs/{job}/export")
    finally:
        server.stop()
        home.close()
    # Then the view says shards, the item is served from the index, the download says
    # where the results are, and the export lists every item
    assert view["results"] == "shards"
    assert item.status_code == 200 and item.json()["status"] == "done"
    assert download.status_code == 409
    assert "JSONL shards" in download.json()["detail"]
    assert [json.loads(line)["key"] for line in export.text.splitlines()] == keys


def test_the_cli_submits_a_shard_job_that_worker_processes_finish(home: Home,
                                                                  tmp_path: Path) -> None:
    # Given a folder of 40 files
    keys = write_files(tmp_path / "photos", 40)
    # When it is submitted with --results shards and waited for, with 2 worker processes
    summary = home.json("submit", tmp_path / "photos", "--results", "shards", "--wait",
                        "--workers", "2", "--model", MODEL, GPUFLEET_CHUNK_SIZE="8")
    # Then the job succeeded with five shards of eight items, every key once
    assert (summary["state"], summary["results"], summary["done"]) == ("succeeded",
                                                                       "shards", 40)
    shards = _shards(home.path / "buckets" / "results" / summary["job"])
    assert sorted(len(rows) for rows in shards.values()) == [8] * 5
    assert sorted(r["key"] for rows in shards.values() for r in rows) == keys
    # And a bad mode is one clear line
    bad = home.run("submit", tmp_path / "photos", "--results", "files", check=False)
    assert bad.returncode == 1
    assert " ".join(bad.stderr.split()) == "error: results must be objects or shards, not 'files'"
