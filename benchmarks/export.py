"""Bulk export of a 1,000,000-item job: rows/s and peak memory per format.

Fills a SQLite index directly (one job, N items, five tags on each done item, a
failure reason on one in fifty), then, each in its own process so its peak RSS is
its own:

- a baseline process: the same imports (pyarrow included), the index opened and the
  job read, nothing exported: what any export pays anyway;
- `gpufleet results`' way of reading every item (``Index.iter_results``), written
  nowhere: the rate of the read the CLI already has, for comparison;
- ``export_job`` in each format (jsonl, csv, parquet), parts of 1,000,000 rows.

Prints rows/s, peak RSS and its ratio to the baseline's, all measured in this run.
Not a test: nothing here decides anything.

    .venv/bin/python benchmarks/export.py [--items 1000000]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
JOB = "20261206-000000-bench0"
_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {src!r})
import pyarrow, pyarrow.parquet
from gpufleet.export import export_job
from gpufleet.index import Index
from gpufleet.store import open_location
what, db, out = sys.argv[1:4]
index = Index(db)
job = index.job({job!r})
began = time.perf_counter()
rows = 0
if what == "iter_results":
    for _ in index.iter_results(job.id):
        rows += 1
elif what != "baseline":
    export_job(index, job.id, open_location(out), fmt=what)
    rows = job.counts.total
seconds = time.perf_counter() - began
print(json.dumps({{"rows": rows, "s": seconds,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def fill(db: Path, count: int) -> float:
    """The index's tables (made by gpufleet) filled straight through sqlite3."""
    sys.path.insert(0, SRC)
    from gpufleet.index import Index

    Index(f"sqlite:///{db}").close()
    began = time.perf_counter()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("INSERT INTO jobs (id, tenant, model, input, output, total, created_at, "
                 "cancelled, priority, requeues, started_at) VALUES "
                 "(?, 'default', 'synthetic', 'file:///in/', 'file:///out/', ?, 0, 0, 0, 0, 1)",
                 (JOB, count))
    step = 50_000
    for start in range(0, count, step):
        keys = [f"photos/{i // 1000:04d}/img-{i:07d}.jpg" for i in range(start,
                                                                      min(count, start + step))]
        failed = {k for n, k in enumerate(keys, start) if n % 50 == 0}
        conn.executemany(
            "INSERT INTO items (job_id, key, status, attempts, error, worker, finished_at, "
            "infer_ms) VALUES (?, ?, ?, 1, ?, 'w', 2.0, 1.5)",
            ((JOB, k, "failed" if k in failed else "done",
              "not an image: cannot identify image file" if k in failed else None)
             for k in keys))
        conn.executemany(
            "INSERT INTO tags (job_id, key, rank, tag_id, label, label_lower, score) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((JOB, k, rank, f"n0{rank + 1:07d}", f"label {rank}", f"label {rank}",
              0.5 / (rank + 1)) for k in keys if k not in failed for rank in range(5)))
        conn.commit()
    conn.close()
    return time.perf_counter() - began


def measure(what: str, db: Path, out: Path) -> dict[str, float]:
    code = _CHILD.format(src=SRC, job=JOB)
    done = subprocess.run([sys.executable, "-c", code, what, f"sqlite:///{db}", str(out)],
                          capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp, "index.db")
        fill_s = fill(db, args.items)
        print(f"index: {args.items:,} items (+{args.items * 49 // 50 * 5:,} tag rows) "
              f"inserted in {fill_s:.1f} s, {db.stat().st_size / 2**20:.0f} MB")
        base = measure("baseline", db, Path(tmp))
        print(f"{'what':<22}{'rows/s':>12}{'seconds':>10}{'peak RSS MB':>14}"
              f"{'x baseline':>12}{'file MB':>10}")
        print(f"{'baseline (no export)':<22}{'':>12}{'':>10}{base['peak_mb']:>14.0f}"
              f"{1.0:>12.2f}{'':>10}")
        for what in ("iter_results", "jsonl", "csv", "parquet"):
            out = Path(tmp, what)
            r = measure(what, db, out)
            size = sum(p.stat().st_size for p in out.glob("*")) / 2**20 if out.exists() else 0
            label = "read (iter_results)" if what == "iter_results" else f"export {what}"
            print(f"{label:<22}{r['rows'] / r['s']:>12,.0f}{r['s']:>10.1f}{r['peak_mb']:>14.0f}"
                  f"{r['peak_mb'] / base['peak_mb']:>12.2f}"
                  + (f"{size:>10.0f}" if size else f"{'':>10}"))


if __name__ == "__main__":
    main()
