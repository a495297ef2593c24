"""Switching an SQLite file to WAL safely when several processes open it at once."""

from __future__ import annotations

import sqlite3
import time

from gpufleet.jitter import equal_jitter


def enable_wal(conn: sqlite3.Connection, *, timeout_s: float = 30.0) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the file.

    Converting a new file takes an exclusive lock that SQLite does not wait for
    through its busy timeout, so processes opening a fresh database together
    would otherwise fail with "database is locked".
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(equal_jitter(0.1))
