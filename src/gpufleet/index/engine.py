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
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        enable_wal(dbapi_conn)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def first_line(exc: BaseException) -> str:
    """The database's own message (not SQLAlchemy's wrapping), first line only."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]
