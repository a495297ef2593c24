"""The statements that record a batch of results in the index, many rows to each."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

# Rows in one multi-row INSERT of results: 8 columns each, well inside SQLite's 32,766 and
# PostgreSQL's 65,535 parameters a statement.
_RECORD_ROWS = 500

# (up to VALUES, parameters a row, constants after them in each row, after the rows)
_Shape = tuple[str, int, str, str]
_UPSERT_ITEMS: _Shape = (
    "INSERT INTO items (job_id, key, status, error, worker, started_at, finished_at, "
    "infer_ms, attempts) VALUES ", 8, ", 1",
    " ON CONFLICT (job_id, key) DO UPDATE SET status = excluded.status, "
    "attempts = items.attempts + 1, error = excluded.error, worker = excluded.worker, "
    "started_at = excluded.started_at, finished_at = excluded.finished_at, "
    "infer_ms = excluded.infer_ms")
_INSERT_TAGS: _Shape = (
    "INSERT INTO tags (job_id, key, rank, tag_id, label, label_lower, score) VALUES ",
    7, "", "")
_DELETE_TAGS = "DELETE FROM tags WHERE job_id = {mark} AND key IN ({marks})"


class RecordSql:
    """The statements Index.record runs for every batch, in the driver's parameter style,
    each over up to _RECORD_ROWS rows at once (multi-row VALUES, or keys in one IN list).

    One statement per row (executemany) costs the driver a step, and a release of the
    interpreter lock, per row: six rows per item with its five tags. Many rows a statement
    recorded results 20-30 % faster on SQLite (``benchmarks/store_index.py``'s index rate,
    measured beside the old way). The delete of a batch's old tags is plain SQL too:
    SQLAlchemy renders an expanding IN list afresh on every call, a tenth of a no-op
    worker's time holding the interpreter lock (py-spy --gil). ``INSERT ... ON CONFLICT
    DO UPDATE`` is the same in SQLite and PostgreSQL; a rerun of an item counts one more
    attempt and replaces its outcome. Rows are distinct per statement (record keeps the
    last outcome per item), as PostgreSQL requires of one upsert.
    """

    def __init__(self, paramstyle: str) -> None:
        self._mark = "?" if paramstyle == "qmark" else "%s"
        self._statements: dict[tuple[str, int], str] = {}

    def upserts(self, rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[str, tuple[Any, ...]]]:
        return self._chunked(_UPSERT_ITEMS, rows)

    def tag_inserts(self, rows: Sequence[tuple[Any, ...]]
                    ) -> Iterator[tuple[str, tuple[Any, ...]]]:
        return self._chunked(_INSERT_TAGS, rows)

    def tag_deletes(self, job_id: str, keys: Sequence[str]
                    ) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """Deletes of the tags of these keys of one job, any earlier run's."""
        for start in range(0, len(keys), _RECORD_ROWS):
            chunk = keys[start:start + _RECORD_ROWS]
            sql = self._statements.get((_DELETE_TAGS, len(chunk)))
            if sql is None:
                sql = self._statements[(_DELETE_TAGS, len(chunk))] = _DELETE_TAGS.format(
                    mark=self._mark, marks=", ".join([self._mark] * len(chunk)))
            yield sql, (job_id, *chunk)

    def _chunked(self, shape: _Shape, rows: Sequence[tuple[Any, ...]]
                 ) -> Iterator[tuple[str, tuple[Any, ...]]]:
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
