"""A job's items as export rows, read from the index in keyset-paginated batches.

Each batch is one short transaction: the next page starts after the last key seen
(``key > ?`` on the items primary key), never with OFFSET, and the tags of a page
are one range read on the tags primary key. A running job is exported as it is
while the export reads it: items still pending are rows with status ``pending``,
no tags and no result; an item finishing during the export appears as it was when
its page was read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import select

from gpufleet.domain import Job, JobState
from gpufleet.errors import GpufleetError
from gpufleet.index import Index
from gpufleet.index.schema import items, tags

# One export row: these values, in this order. tags: [{"id", "label", "score"}], best first.
COLUMNS = ("job", "key", "status", "attempts", "error", "finished_at", "result", "tags")
Row = tuple[str, str, str, int, str | None, float | None, str | None, list[dict[str, Any]]]
BATCH_ROWS = 10_000
_WRITTEN = frozenset({"done", "failed"})  # outcomes the worker wrote a result object for


class NotExportable(GpufleetError):
    """The job has no results yet: it is queued."""


def exportable(job: Job) -> Job:
    """The job, unless it is still queued (nothing has run: there is nothing to export)."""
    if job.state is JobState.QUEUED:
        raise NotExportable(f"job {job.id} is queued: no results yet; export it once it runs")
    return job


def result_prefix(job: Job, output: str) -> str | None:
    """Where the job's per-item result objects are (``<output>/<job>/``); None when its
    results are JSONL shards (there is no object per item)."""
    if job.results == "shards":
        return None
    return f"{output.rstrip('/')}/{job.id}/" if output != "." else f"{job.id}/"


def read_batches(index: Index, job_id: str, *, batch_rows: int = BATCH_ROWS,
                 shown: Callable[[str], str] = str) -> Iterator[list[Row]]:
    """The job's items in key order, batch_rows at a time. JobNotFound, NotExportable.

    shown: the job's output location as the reader may see it (the API's, relative to the
    tenant's root), which result object keys start with.
    """
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    job = exportable(index.job(job_id))
    return _batches(index, job, batch_rows, result_prefix(job, shown(job.output)))


def _batches(index: Index, job: Job, batch_rows: int, prefix: str | None
             ) -> Iterator[list[Row]]:
    after: str | None = None
    while True:
        query = (select(items.c.key, items.c.status, items.c.attempts, items.c.error,
                        items.c.finished_at)
                 .where(items.c.job_id == job.id).order_by(items.c.key).limit(batch_rows))
        if after is not None:
            query = query.where(items.c.key > after)
        with index.transaction() as conn:
            page = conn.execute(query).all()
            if not page:
                return
            found: dict[str, list[dict[str, Any]]] = defaultdict(list)
            # Fetched whole (a page's tags, a few per item): row by row costs twice the time.
            for key, tag_id, label, score in conn.execute(
                    select(tags.c.key, tags.c.tag_id, tags.c.label, tags.c.score)
                    .where(tags.c.job_id == job.id, tags.c.key >= page[0].key,
                           tags.c.key <= page[-1].key)
                    .order_by(tags.c.key, tags.c.rank)).all():
                found[key].append({"id": tag_id, "label": label, "score": score})
        yield [(job.id, r.key, r.status, r.attempts, r.error, r.finished_at,
                prefix + r.key + ".json" if prefix is not None and r.status in _WRITTEN
                else None, found.get(r.key, []))
               for r in page]
        after = page[-1].key
