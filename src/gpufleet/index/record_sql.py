"""The statements that record a batch of results in the index, many rows to each.

Index.record runs them for every batch a worker finishes, so their cost per row is
the worker's: a statement per row (executemany) costs the driver a step, and a
release of the interpreter lock, per row, six rows an item with its five tags.

- SQLite (and any other driver): multi-row ``VALUES``, up to _RECORD_ROWS rows a
  statement, each statement text made once per row count. Recorded results 20-30 %
  faster than executemany (``benchmarks/store_index.py``, measured beside it).
- PostgreSQL: a statement of many ``VALUES`` is parsed and planned anew on every
  call (the engine makes no server-side prepared statements: index/postgres.py), and
  that was most of its cost: 3,000 results a second (now 15,000-25,000, the same
  benchmark). Here the upsert and the delete
  take whole columns as arrays (``unnest``, ``= ANY``): short statements, the same
  text every batch; the tag rows go in by ``COPY``, which plans nothing; and only the
  items recorded before have their old tags deleted.

``INSERT ... ON CONFLICT DO UPDATE``: a rerun of an item counts one more attempt and
replaces its outcome. Rows are distinct per statement (Index.record keeps the last
outcome per item), as PostgreSQL requires of one upsert. Old tags of a rerun item are
deleted before its new ones go in.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection

# Rows in one multi-row INSERT of results: 8 columns each, well inside SQLite's 32,766
# parameters a statement.
_RECORD_ROWS = 500
_ITEM_COLUMNS = "job_id, key, status, error, worker, started_at, finished_at, infer_ms"
_ON_CONFLICT = (
    " ON CONFLICT (job_id, key) DO UPDATE SET status = excluded.status, "
    "attempts = items.attempts + 1, error = excluded.error, worker = excluded.worker, "
    "started_at = excluded.started_at, finished_at = excluded.finished_at, "
    "infer_ms = excluded.infer_ms")
_TAG_COLUMNS = "job_id, key, rank, tag_id, label, label_lower, score"

# (up to VALUES, parameters a row, constants after them in each row, after the rows)
_Shape = tuple[str, int, str, str]
_UPSERT_ITEMS: _Shape = (
    f"INSERT INTO items ({_ITEM_COLUMNS}, attempts) VALUES ", 8, ", 1", _ON_CONFLICT)
_INSERT_TAGS: _Shape = (f"INSERT INTO tags ({_TAG_COLUMNS}) VALUES ", 7, "", "")
_DELETE_TAGS = "DELETE FROM tags WHERE job_id = {mark} AND key IN ({marks})"

Row = tuple[Any, ...]


class ResultRows(Protocol):
    def write(self, conn: Connection, rows: Sequence[Row], keys_by_job: Mapping[str, list[str]],
              tag_rows: Sequence[Row]) -> None:
        """Upsert the item rows, delete the old tags of keys_by_job, insert tag_rows."""


def result_rows(dialect: str, paramstyle: str) -> ResultRows:
    return PostgresRows() if dialect == "postgresql" else ValuesRows(paramstyle)


class ValuesRows:
    """Multi-row VALUES and IN lists, in the driver's parameter style (SQLite's qmark)."""

    def __init__(self, paramstyle: str) -> None:
        self._mark = "?" if paramstyle == "qmark" else "%s"
        self._statements: dict[tuple[str, int], str] = {}

    def write(self, conn: Connection, rows: Sequence[Row], keys_by_job: Mapping[str, list[str]],
              tag_rows: Sequence[Row]) -> None:
        for sql, params in self._chunked(_UPSERT_ITEMS, rows):
            conn.exec_driver_sql(sql, params)
        for job_id, keys in keys_by_job.items():
            # Plain SQL, not delete().where(in_()): SQLAlchemy renders an expanding IN list
            # afresh on every call, a tenth of a no-op worker's time holding the GIL.
            for start in range(0, len(keys), _RECORD_ROWS):
                chunk = keys[start:start + _RECORD_ROWS]
                conn.exec_driver_sql(self._delete(len(chunk)), (job_id, *chunk))
        for sql, params in self._chunked(_INSERT_TAGS, tag_rows):
            conn.exec_driver_sql(sql, params)

    def _chunked(self, shape: _Shape, rows: Sequence[Row]) -> Iterator[tuple[str, Row]]:
        for start in range(0, len(rows), _RECORD_ROWS):
            chunk = rows[start:start + _RECORD_ROWS]
            yield (self._statement(shape, len(chunk)),
                   tuple(itertools.chain.from_iterable(chunk)))

    def _statement(self, shape: _Shape, rows: int) -> str:
        """The statement for this many rows, made once per count (most batches fill it)."""
        head, columns, constants, tail = shape
        sql = self._statements.get((head, rows))
        if sql is None:
            row = f"({', '.join([self._mark] * columns)}{constants})"
            sql = self._statements[(head, rows)] = f"{head}{', '.join([row] * rows)}{tail}"
        return sql

    def _delete(self, keys: int) -> str:
        sql = self._statements.get((_DELETE_TAGS, keys))
        if sql is None:
            sql = self._statements[(_DELETE_TAGS, keys)] = _DELETE_TAGS.format(
                mark=self._mark, marks=", ".join([self._mark] * keys))
        return sql


class PostgresRows:
    """Columns as arrays for the upsert and the delete, COPY for the tags (psycopg 3)."""

    _UPSERT = (f"INSERT INTO items ({_ITEM_COLUMNS}, attempts) "
               "SELECT *, 1 FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], "
               "%s::text[], %s::float8[], %s::float8[], %s::float8[])" + _ON_CONFLICT +
               " RETURNING job_id, key, attempts")
    _DELETE = "DELETE FROM tags WHERE job_id = %s AND key = ANY(%s::text[])"
    _COPY = f"COPY tags ({_TAG_COLUMNS}) FROM STDIN"

    def write(self, conn: Connection, rows: Sequence[Row], keys_by_job: Mapping[str, list[str]],
              tag_rows: Sequence[Row]) -> None:
        # The rows stay in key order in the arrays: concurrent writers lock them in the same
        # order (see Index.record).
        upserted = conn.exec_driver_sql(
            self._UPSERT, tuple(list(column) for column in zip(*rows, strict=True)))
        # Only an item recorded before can have tags to replace (tags are written here
        # alone, and each record counts an attempt): on a first delivery, nothing to
        # delete. The delete was a third of the time, its plan often a scan of all tags.
        again: dict[str, list[str]] = {}
        for job_id, key, attempts in upserted:
            if attempts > 1:
                again.setdefault(job_id, []).append(key)
        for job_id, keys in again.items():
            conn.exec_driver_sql(self._DELETE, (job_id, keys))
        if tag_rows:
            # The transaction's own connection: the rows are part of it.
            driver = conn.connection.driver_connection
            with driver.cursor() as cursor, cursor.copy(self._COPY) as copy:  # type: ignore[union-attr]
                for row in tag_rows:
                    copy.write_row(row)
