"""PostgreSQL engines: psycopg 3, a connection pool per process, a bounded connect time."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DisconnectionError, NoSuchModuleError

from gpufleet.errors import ConfigError

CONNECT_TIMEOUT_S = 10


def postgres_engine(url: URL) -> Engine:
    """``postgresql://user@host/db`` (or ``postgres://``) on the psycopg 3 driver."""
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    # No server-side prepared statements: a generic plan made while a table was small
    # (a job's first results) kept seq-scanning tags as it grew (measured: 4x slower at
    # 20 k items, worse after); and poolers such as PgBouncer in transaction mode need it.
    connect_args["prepare_threshold"] = None
    try:
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=1800,
                               connect_args=connect_args)
    except (ImportError, NoSuchModuleError):
        raise ConfigError(f"{url.drivername} needs psycopg: pip install 'gpufleet[postgres]'"
                          ) from None
    _one_pool_per_process(engine)
    return engine


def _one_pool_per_process(engine: Engine) -> None:
    """A process forked with the engine must not use its parent's connections: reconnect."""

    @event.listens_for(engine, "connect")
    def _connect(_dbapi_conn: Any, record: Any) -> None:
        record.info["pid"] = os.getpid()

    @event.listens_for(engine, "checkout")
    def _checkout(_dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if record.info.get("pid") != os.getpid():
            record.dbapi_connection = proxy.dbapi_connection = None
            raise DisconnectionError("connection opened by another process: reconnecting")
