"""The default queue: one SQLite file holds several named queues, with at-least-once leases.

A task is visible when ``visible_at <= now``. Receiving leases it in one short
``BEGIN IMMEDIATE`` transaction: ``visible_at`` moves to the end of the lease,
``receives`` goes up and the row gets a fresh random token. Nothing is deleted
on receive, so a consumer that dies mid-task loses nothing: the task comes back
when its lease runs out. extend, ack, release and dead_letter act only while the
token still matches; once another consumer has received the task, the old lease
can no longer touch it. (A lease whose timeout has passed still settles until
someone else receives the task.)
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

from gpufleet.errors import QueueUnavailable, TaskTooLarge
from gpufleet.queue.base import DeadLetter, Lease, QueueBase, QueueDepth
from gpufleet.sqlite_wal import enable_wal

__all__ = ["SqliteQueue"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a task id means one task
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    visible_at REAL NOT NULL,
    receives INTEGER NOT NULL DEFAULT 0,
    token TEXT,  -- NULL until received, and again after a release
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (queue, visible_at, id);
CREATE INDEX IF NOT EXISTS tasks_leased ON tasks (queue, visible_at) WHERE token IS NOT NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    receives INTEGER NOT NULL,
    error TEXT NOT NULL,
    died_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_queue ON dead_letters (queue, id);
"""

_BUSY_TIMEOUT_S = 30.0
_HELD = " WHERE id = ? AND queue = ? AND token = ?"  # the row is still this lease's


class SqliteQueue(QueueBase):
    """The queue called ``name`` in the SQLite file at ``path``; see the module docstring."""

    supports_delay = True
    max_message_bytes = 1 << 20

    @classmethod
    def from_url(cls, url: str, *, name: str) -> SqliteQueue:
        """``sqlite:///path/to/queue.db``."""
        return cls(urlsplit(url).path, name=name)

    def __init__(self, path: str, *, name: str, clock: Callable[[], float] = time.time) -> None:
        self.path = self.where = path
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()  # a worker's heartbeat thread shares this object
        try:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise QueueUnavailable(f"cannot create queue directory for {path!r}: {exc}") from exc
        with self._translate():
            self._db = sqlite3.connect(
                path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        try:
            with self._translate():
                self._db.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
                enable_wal(self._db, timeout_s=_BUSY_TIMEOUT_S)
                self._db.execute("PRAGMA synchronous = NORMAL")
            with self._tx() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
        except BaseException:
            self._db.close()
            raise

    def enqueue(self, bodies: Sequence[str], *, delay_s: float = 0.0) -> None:
        limit = self.max_message_bytes
        for body in bodies:
            if len(body) > limit // 4 and (size := len(body.encode())) > limit:
                raise TaskTooLarge(
                    f"task body of {size} bytes is over this queue's limit of {limit} bytes "
                    "(max_message_bytes); put fewer items in each task"
                )
        if not bodies:
            return
        visible_at = self._clock() + max(0.0, delay_s)
        with self._tx() as db:
            db.executemany(
                "INSERT INTO tasks (queue, body, visible_at) VALUES (?, ?, ?)",
                ((self.name, body, visible_at) for body in bodies),
            )

    def receive(self, max_tasks: int, *, visibility_timeout_s: float,
                wait_s: float = 0.0) -> list[Lease]:
        # wait_s: SQLite has nothing to wait on, so this returns at once.
        if max_tasks <= 0:
            return []
        now = self._clock()
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, body, receives FROM tasks WHERE queue = ? AND visible_at <= ?"
                " ORDER BY visible_at, id LIMIT ?",
                (self.name, now, max_tasks),
            ).fetchall()
            leases = [Lease(str(i), body, n + 1, secrets.token_hex(16)) for i, body, n in rows]
            db.executemany(
                "UPDATE tasks SET visible_at = ?, receives = receives + 1, token = ? WHERE id = ?",
                [(now + visibility_timeout_s, lease.token, int(lease.id)) for lease in leases],
            )
        return leases

    def extend(self, lease: Lease, *, visibility_timeout_s: float) -> bool:
        return self._settle(
            "UPDATE tasks SET visible_at = ?", (self._clock() + visibility_timeout_s,), lease
        )

    def ack(self, lease: Lease) -> bool:
        return self._settle("DELETE FROM tasks", (), lease)

    def ack_batch(self, leases: Sequence[Lease]) -> list[bool]:
        """Every lease in one transaction: a worker acks the tasks a write finished
        together, and a commit each cost it more than the deletes."""
        with self._tx() as db:
            return [db.execute("DELETE FROM tasks" + _HELD,
                               (int(lease.id), self.name, lease.token)).rowcount == 1
                    for lease in leases]

    def release(self, lease: Lease, *, delay_s: float = 0.0, error: str | None = None) -> bool:
        return self._settle(
            "UPDATE tasks SET visible_at = ?, token = NULL, last_error = COALESCE(?, last_error)",
            (self._clock() + max(0.0, delay_s), error),
            lease,
        )

    def dead_letter(self, lease: Lease, *, error: str) -> bool:
        with self._tx() as db:
            moved = db.execute(
                "INSERT INTO dead_letters (id, queue, body, receives, error, died_at)"
                " SELECT id, queue, body, receives, ?, ? FROM tasks"
                " WHERE id = ? AND queue = ? AND token = ?",
                (error, self._clock(), int(lease.id), self.name, lease.token),
            ).rowcount
            if moved:
                db.execute("DELETE FROM tasks WHERE id = ?", (int(lease.id),))
        return moved == 1

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock, self._translate():
            rows = self._db.execute(
                "SELECT id, body, receives, error, died_at FROM dead_letters"
                " WHERE queue = ? ORDER BY id",
                (self.name,),
            ).fetchall()
        return [DeadLetter(str(i), body, n, error, died_at) for i, body, n, error, died_at in rows]

    def redrive(self) -> int:
        with self._tx() as db:
            moved: int = db.execute(
                "INSERT INTO tasks (id, queue, body, visible_at, receives, token, last_error)"
                " SELECT id, queue, body, ?, 0, NULL, error FROM dead_letters WHERE queue = ?",
                (self._clock(), self.name),
            ).rowcount
            db.execute("DELETE FROM dead_letters WHERE queue = ?", (self.name,))
        return moved

    def depth(self) -> QueueDepth:
        with self._lock, self._translate():
            total, in_flight, dead = self._db.execute(
                "SELECT (SELECT COUNT(*) FROM tasks WHERE queue = :q),"
                " (SELECT COUNT(*) FROM tasks"
                "   WHERE queue = :q AND token IS NOT NULL AND visible_at > :now),"
                " (SELECT COUNT(*) FROM dead_letters WHERE queue = :q)",
                {"q": self.name, "now": self._clock()},
            ).fetchone()
        return QueueDepth(queued=total - in_flight, in_flight=in_flight, dead=dead)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _settle(self, statement: str, params: tuple[object, ...], lease: Lease) -> bool:
        """Run statement on the lease's row if the lease still holds it. True if it did."""
        with self._lock, self._translate():
            cursor = self._db.execute(
                statement + _HELD, (*params, int(lease.id), self.name, lease.token)
            )
        return cursor.rowcount == 1

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock up front so it never deadlocks."""
        with self._lock, self._translate():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                raise

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise QueueUnavailable(f"sqlite queue {self.name!r} at {self.path!r}: {exc}") from exc
