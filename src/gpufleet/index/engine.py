"""Opening an index database: one engine per URL, SQLite tuned for several processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError

from gpufleet.errors import ConfigError
from gpufleet.index.postgres import postgres_engine
from gpufleet.redact import redact_url
from gpufleet.sqlite_wal import enable_wal

BUSY_TIMEOUT_S = 30.0  # how long an SQLite writer waits for another's lock before failing


def open_engine(url: str) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql://user@host/db``; ConfigError otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"invalid index URL {redact_url(url)!r}") from None
    if parsed.get_backend_name() in ("postgresql", "postgres"):
        return postgres_engine(parsed)
    if parsed.get_backend_name() != "sqlite":
        raise ConfigError(f"unsupported index URL {redact_url(url)}: expected sqlite:///path or "
                          "postgresql://user@host/db")
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        enable_wal(dbapi_conn)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # A statement that changes many rows inside a transaction (Index.record's multi-row
        # upserts, its tag delete) keeps a statement journal; on disk that is a file in
        # /var/tmp written page by page. In memory, recording a batch's results took
        # 37 to 21 us an item (benchmarks/store_index.py's SQLite rate) and the worker's
        # writes halved (strace). It holds the pages one statement changes: a batch's.
        cur.execute("PRAGMA temp_store=MEMORY")
        # Recording a batch inserts each item's tags into two indexes (by tag id, by label)
        # at as many places as the batch has distinct tags: about 2,000 leaf pages for a
        # 1,000-class model, four times SQLite's default cache of 2 MB, which then read
        # about four pages an item back from the file. 16 MB holds them: two workers on a
        # 2-core AMD EPYC recorded 26 % more items a second (60,000 no-op items, submitted
        # as benchmarks/overhead.py submits its 20,000).
        # A ceiling, not an allocation: a connection's cache grows with what it reads.
        cur.execute("PRAGMA cache_size=-16384")
        cur.close()

    return engine


def first_line(exc: BaseException) -> str:
    """The database's own message (not SQLAlchemy's wrapping), first line only."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]
