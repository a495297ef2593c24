"""Reads and idempotent writes on the index. Driver errors become IndexUnavailable."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    delete,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from gpufleet.domain import Counts, Item, ItemResult, ItemStatus, Job, JobUsage
from gpufleet.errors import ConfigError, IndexUnavailable, JobFinished, JobNotFound
from gpufleet.index.engine import BUSY_TIMEOUT_S, first_line, open_engine
from gpufleet.index.item_reads import read_items, tag_conditions
from gpufleet.index.migrate import require_current
from gpufleet.index.record_sql import result_rows
from gpufleet.index.schema import items, jobs, metadata, tags, workers
from gpufleet.index.usage import job_usage
from gpufleet.index.write_gate import write_gate
from gpufleet.redact import redact_url

_ROWS_PER_STATEMENT = 5000


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    model: str
    state: str
    started_at: float
    last_seen: float
    bootstrap_s: float | None
    # The fleet's columns (issue 4): see index/schema.py.
    instance: str | None = None
    capacity: str | None = None
    price_per_h: float | None = None
    busy_s: float | None = None
    idle_s: float | None = None
    items: int | None = None
    state_since: float | None = None
    # Its GPUs (issue 10): the machine's count, and the latest NVML reading of its own.
    gpus: int | None = None
    gpu_util_pct: float | None = None
    gpu_memory_mb: float | None = None


class Index:
    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.engine = open_engine(url)
        self._rows = result_rows(self.engine.dialect.name, self.engine.dialect.paramstyle)
        self._postgres = self.engine.dialect.name == "postgresql"
        # A worker's writes wait their turn here rather than in SQLite's sleeps (write_gate.py).
        self._gate = None if self._postgres else write_gate(self.engine.url.database,
                                                            timeout_s=BUSY_TIMEOUT_S)
        if self._postgres:  # `gpufleet init` migrates it
            try:
                require_current(self.engine, redact_url(url))
            except (ConfigError, IndexUnavailable):
                self.engine.dispose()
                raise
            return
        try:
            metadata.create_all(self.engine)
        except OperationalError:
            # Another process created the tables between our check and our CREATE.
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise IndexUnavailable(f"index {redact_url(url)}: {first_line(exc)}") from exc
        if missing := _missing_columns(self.engine):  # made by an older gpufleet
            self.engine.dispose()
            raise ConfigError(f"index {redact_url(url)} predates this gpufleet (no column "
                              f"{missing[0]}): run `gpufleet init` to upgrade it")

    def close(self) -> None:
        self.engine.dispose()
        if self._gate is not None:
            self._gate.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; driver errors become IndexUnavailable. For the index's neighbours
        (fleet records, API keys and queries) that share its engine."""
        try:
            with self.engine.begin() as conn:
                if self._postgres:
                    # A commit must be on the server's disk before it returns: callers act on
                    # it at once (a worker acks the task whose results it recorded, submit
                    # prints the job it created). With the server's or role's default set to
                    # synchronous_commit=off, a crash of PostgreSQL loses the last commits it
                    # said were made: results gone, their task already acked, and the job
                    # stranded until the sweeper noticed (issue 11). SET LOCAL, so it holds
                    # for this transaction also behind a pooler in transaction mode.
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO on")
                yield conn
        except SQLAlchemyError as exc:
            raise IndexUnavailable(f"index: {first_line(exc)}") from exc

    @contextmanager
    def _in_turn(self) -> Iterator[Connection]:
        """A transaction of a worker's frequent writes (results, its own row): on SQLite, in
        turn with the other workers' through the write gate (write_gate.py)."""
        turn = self._gate.held() if self._gate is not None else nullcontext()
        with turn, self.transaction() as conn:
            yield conn

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self._postgres else sqlite
        return dialect.insert(table)

    # Jobs ------------------------------------------------------------------

    def create_job(self, job_id: str, *, model: str, input: str, output: str,
                   keys: Iterable[str], tenant: str = "default",
                   deadline_s: float | None = None, priority: int = 0,
                   enqueuer: str | None = None, enqueuer_lease_s: float = 0.0,
                   preprocess: str | None = None, results: str = "objects") -> Job:
        """Record a job and its items (duplicate keys collapse) in one transaction.

        keys is read once, as a stream: an exception it raises leaves no job. With an
        enqueuer, the job is marked as being enqueued by it (see index/enqueue_marks.py).
        """
        now = self.clock()
        ins = self._insert(items).on_conflict_do_nothing(
            index_elements=[items.c.job_id, items.c.key])
        with self.transaction() as conn:
            conn.execute(insert(jobs).values(
                id=job_id, tenant=tenant, model=model, input=input, output=output,
                total=0, created_at=now, cancelled=False, deadline_s=deadline_s,
                priority=priority, enqueuer=enqueuer, preprocess=preprocess,
                results=None if results == "objects" else results,
                enqueuer_until=None if enqueuer is None else now + enqueuer_lease_s))
            stream = iter(keys)
            while chunk := list(itertools.islice(stream, _ROWS_PER_STATEMENT)):
                conn.execute(ins, [{"job_id": job_id, "key": k,
                                    "status": ItemStatus.PENDING.value, "attempts": 0}
                                   for k in chunk])
            total = conn.execute(select(func.count()).where(items.c.job_id == job_id)).scalar()
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(total=total))
            return self._read_job(conn, job_id)

    def delete_job(self, job_id: str) -> None:
        with self.transaction() as conn:
            for table in (tags, items):
                conn.execute(delete(table).where(table.c.job_id == job_id))
            conn.execute(delete(jobs).where(jobs.c.id == job_id))

    def job(self, job_id: str) -> Job:
        with self.transaction() as conn:
            return self._read_job(conn, job_id)

    def _read_job(self, conn: Connection, job_id: str) -> Job:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}")
        counts = self._counts(conn, [job_id])
        usage = job_usage(conn, [job_id])
        return _job(row, counts.get(job_id, {}), usage.get(job_id))

    def jobs(self) -> list[Job]:
        """Every job, oldest first."""
        with self.transaction() as conn:
            rows = conn.execute(select(jobs).order_by(jobs.c.created_at, jobs.c.id)).mappings()
            rows_list = list(rows)
            counts = self._counts(conn, None)
            usage = job_usage(conn, None)
        return [_job(r, counts.get(r["id"], {}), usage.get(r["id"])) for r in rows_list]

    def models(self) -> list[str]:
        with self.transaction() as conn:
            return list(conn.execute(select(jobs.c.model).distinct()).scalars())

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a job: its pending items end cancelled, workers drop its queued tasks.

        Items already running finish and keep their outcome. Cancelling twice changes
        nothing; a finished job is left as it is (JobFinished).
        """
        with self.transaction() as conn:
            row = conn.execute(select(jobs.c.cancelled).where(jobs.c.id == job_id)).first()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            pending = conn.execute(select(func.count()).where(
                items.c.job_id == job_id, items.c.status == ItemStatus.PENDING.value)).scalar()
            if not row.cancelled and not pending:
                job = self._read_job(conn, job_id)
                raise JobFinished(f"job {job_id} is finished ({job.state.value}): "
                                  "nothing to cancel")
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(cancelled=True))
            conn.execute(update(items)
                         .where(items.c.job_id == job_id,
                                items.c.status == ItemStatus.PENDING.value)
                         .values(status=ItemStatus.CANCELLED.value, error="job cancelled",
                                 finished_at=self.clock()))
            return self._read_job(conn, job_id)

    def take_up(self, job_id: str) -> bool:
        """A worker takes one of the job's tasks: the job is started (the first time), and
        whether it is cancelled.

        A read first: a worker asks this every few seconds while its own record thread
        writes, and on SQLite a write waits for the writer's lock (its busy handler
        sleeps up to 100 ms a try), where a read under WAL does not. Only the first
        look at a job writes."""
        with self.transaction() as conn:
            row = conn.execute(select(jobs.c.started_at, jobs.c.cancelled)
                               .where(jobs.c.id == job_id)).one_or_none()
            if row is not None and row.started_at is None:
                conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.started_at.is_(None))
                             .values(started_at=self.clock()))
            return bool(row is not None and row.cancelled)

    def is_cancelled(self, job_id: str) -> bool:
        with self.transaction() as conn:
            return bool(conn.execute(select(jobs.c.cancelled).where(jobs.c.id == job_id))
                        .scalar())

    def _counts(self, conn: Connection, job_ids: list[str] | None) -> dict[str, dict[str, int]]:
        query = select(items.c.job_id, items.c.status, func.count()).group_by(
            items.c.job_id, items.c.status)
        if job_ids is not None:
            query = query.where(items.c.job_id.in_(job_ids))
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for job_id, status, n in conn.execute(query):
            counts[job_id][status] = n
        return counts

    # Items -----------------------------------------------------------------

    def record(self, results: Sequence[ItemResult]) -> None:
        """Upsert each item's outcome and replace its tags: a rerun changes nothing."""
        if not results:
            return
        # One outcome per item (the last wins), in key order: concurrent writers then lock
        # the same rows in the same order, so PostgreSQL never has to break a deadlock.
        latest = {(r.job, r.key): r for r in results}
        results = [latest[job_key] for job_key in sorted(latest)]
        rows = [(r.job, r.key, r.status.value, r.error, r.worker, r.started_at, r.finished_at,
                 r.infer_ms) for r in results]
        by_job: dict[str, list[str]] = defaultdict(list)
        for r in results:
            by_job[r.job].append(r.key)
        tag_rows = [(r.job, r.key, rank, t.id, t.label, t.label.lower(), t.score)
                    for r in results for rank, t in enumerate(r.tags)]
        with self._in_turn() as conn:  # many rows to a statement: see record_sql.py
            self._rows.write(conn, rows, by_job, tag_rows)

    def fail_pending(self, job_id: str, keys: Sequence[str] | None, *, error: str) -> int:
        """Mark the items that have no outcome yet as failed (their task was dead-lettered);
        keys None: every pending item of the job."""
        where = [items.c.job_id == job_id, items.c.status == ItemStatus.PENDING.value]
        if keys is not None:
            where.append(items.c.key.in_(list(keys)))
        with self.transaction() as conn:
            result = conn.execute(update(items).where(*where).values(
                status=ItemStatus.FAILED.value, error=error, finished_at=self.clock()))
            return int(result.rowcount)

    def reopen(self, job_id: str, keys: Sequence[str]) -> int:
        """Failed items of these back to pending (a redrive): their job runs again."""
        reopened = 0
        with self.transaction() as conn:
            for start in range(0, len(keys), _ROWS_PER_STATEMENT):
                chunk = list(keys[start:start + _ROWS_PER_STATEMENT])
                reopened += int(conn.execute(update(items).where(
                    items.c.job_id == job_id, items.c.key.in_(chunk),
                    items.c.status == ItemStatus.FAILED.value).values(
                        status=ItemStatus.PENDING.value, error=None,
                        finished_at=None)).rowcount)
        return reopened

    def recorded(self, job_id: str, keys: Sequence[str]) -> set[str]:
        """Which of these items of the job already have an outcome."""
        found: set[str] = set()
        with self.transaction() as conn:
            for start in range(0, len(keys), _ROWS_PER_STATEMENT):
                chunk = list(keys[start:start + _ROWS_PER_STATEMENT])
                found.update(conn.execute(select(items.c.key).where(
                    items.c.job_id == job_id, items.c.key.in_(chunk),
                    items.c.status != ItemStatus.PENDING.value)).scalars())
        return found

    def results(self, job_id: str, *, tag: str | None = None, after: str | None = None,
                limit: int = 1000) -> list[Item]:
        """One page of the job's items in key order, after the key ``after``."""
        query = select(items).where(items.c.job_id == job_id).order_by(items.c.key).limit(limit)
        if after is not None:
            query = query.where(items.c.key > after)
        if tag is not None:
            query = query.where(items.c.key.in_(
                select(tags.c.key).where(tags.c.job_id == job_id, *tag_conditions(tag))))
        with self.transaction() as conn:
            return read_items(conn, query)

    def iter_results(self, job_id: str, *, tag: str | None = None) -> Iterator[Item]:
        after: str | None = None
        while page := self.results(job_id, tag=tag, after=after):
            yield from page
            after = page[-1].key

    # Workers ---------------------------------------------------------------

    def worker_seen(self, worker_id: str, *, host: str, pid: int, model: str, state: str,
                    bootstrap_s: float | None = None, extra: Mapping[str, Any] | None = None
                    ) -> None:
        """extra: the fleet's columns (instance, capacity, price_per_h, busy_s, idle_s, items)."""
        now = self.clock()
        ins = self._insert(workers).values(
            id=worker_id, host=host, pid=pid, model=model, state=state, started_at=now,
            last_seen=now, bootstrap_s=bootstrap_s, **(extra or {}))
        changes: dict[str, Any] = {"state": state, "last_seen": now, **(extra or {})}
        if bootstrap_s is not None:
            changes["bootstrap_s"] = bootstrap_s
        with self._in_turn() as conn:
            conn.execute(ins.on_conflict_do_update(index_elements=[workers.c.id], set_=changes))

    def live_workers(self, *, model: str | None = None, within_s: float = 30.0
                     ) -> list[WorkerInfo]:
        query = select(workers).where(workers.c.last_seen >= self.clock() - within_s,
                                      workers.c.state.not_in(("stopped", "interrupted")))
        if model is not None:
            query = query.where(workers.c.model == model)
        with self.transaction() as conn:
            return [WorkerInfo(**r) for r in conn.execute(query).mappings()]


def _job(row: Any, counts: dict[str, int], usage: JobUsage | None = None) -> Job:
    return Job(id=row["id"], tenant=row["tenant"], model=row["model"], input=row["input"],
               output=row["output"], created_at=row["created_at"],
               cancelled=bool(row["cancelled"]), deadline_s=row["deadline_s"],
               priority=row["priority"] or 0, usage=usage or JobUsage(),
               started_at=row["started_at"], preprocess=row["preprocess"],
               results=row["results"] or "objects",
               counts=Counts(total=row["total"], done=counts.get("done", 0),
                             failed=counts.get("failed", 0),
                             cancelled=counts.get("cancelled", 0),
                             skipped=counts.get("skipped", 0)))


def _missing_columns(engine: Engine) -> list[str]:
    """Columns of the schema that the database's existing tables lack, as table.column."""
    found = inspect(engine)
    return [f"{table.name}.{column.name}" for table in metadata.sorted_tables
            if found.has_table(table.name)
            for column in table.columns
            if column.name not in {c["name"] for c in found.get_columns(table.name)}]
