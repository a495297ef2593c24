"""Index schema migrations with Alembic: apply them, check a database is current, diff it.

PostgreSQL: ``gpufleet init`` applies the migrations, and ``Index`` refuses a
database whose revision is not ``HEAD`` (many workers must not race to change
a shared schema; an operator does it once). SQLite: ``Index`` creates missing
tables itself, so the embedded default needs no set-up step and no Alembic
(an optional dependency); ``gpufleet init`` migrates SQLite too, adopting a
database that ``create_all`` made, so later revisions reach it.

Developers: ``python -m gpufleet.index.migrate revision "what changed"``.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from gpufleet.errors import ConfigError, IndexUnavailable
from gpufleet.index.engine import first_line, open_engine
from gpufleet.redact import redact_url

HEAD = "0008"  # the newest revision this code knows; a test checks it is the scripts' head
INITIAL = "0001"
_SCRIPTS = "gpufleet.index:migrations"
_LOCK_KEY = 0x67707566  # pg_advisory_xact_lock: one migration at a time per database


@dataclass(frozen=True, slots=True)
class Migration:
    before: str | None  # the revision found; None: an empty or never-migrated database
    after: str
    adopted: bool = False  # tables made by create_all were stamped, not recreated

    def describe(self) -> str:
        if self.adopted:
            return f"adopted existing tables, now at revision {self.after}"
        if self.before == self.after:
            return f"already at revision {self.after} (head)"
        return f"migrated {self.before or 'empty'} -> {self.after}"


def current_revision(conn: Connection) -> str | None:
    """The database's revision, read without Alembic; None if it was never migrated."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if value is None else str(value)


def require_current(engine: Engine, where: str) -> None:
    """ConfigError unless the database is at HEAD; IndexUnavailable if it cannot be reached."""
    try:
        with engine.connect() as conn:
            revision = current_revision(conn)
    except SQLAlchemyError as exc:
        raise IndexUnavailable(f"index {where}: {first_line(exc)}") from exc
    if revision is None:
        raise ConfigError(f"index {where} has no gpufleet schema: run `gpufleet init`")
    if revision != HEAD:
        raise ConfigError(f"index {where} is at schema revision {revision}, this gpufleet "
                          f"needs {HEAD}: run `gpufleet init` with the newer of the two")


def upgrade(url: str) -> Migration:
    """Bring the database at url to the head revision. Safe to run from several machines."""
    from alembic import command

    config = alembic_config(url)
    engine = open_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            config.attributes["connection"] = conn
            before = current_revision(conn)
            adopted = before is None and inspect(conn).has_table("jobs")
            if adopted:  # made by Index's create_all: stamp the revision it matches
                command.stamp(config, HEAD if not schema_diff(conn) else INITIAL)
            command.upgrade(config, "head")
            after = current_revision(conn) or ""
    except SQLAlchemyError as exc:
        raise IndexUnavailable(f"index {redact_url(url)}: {first_line(exc)}") from exc
    finally:
        engine.dispose()
    return Migration(before, after, adopted)


def schema_diff(conn: Connection) -> list[Any]:
    """What differs between the database and index/schema.py (empty: they match)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from gpufleet.index.schema import metadata

    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def alembic_config(url: str) -> Any:
    try:
        from alembic.config import Config
    except ImportError:
        raise ConfigError("index migrations need alembic: pip install 'gpufleet[postgres]'"
                          ) from None
    config = Config()
    config.set_main_option("script_location", _SCRIPTS)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def script_head() -> str:
    """The head revision of the migration scripts (HEAD must equal it)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    return str(head)


def _revision(message: str) -> None:
    """Autogenerate the next revision from the schema's difference with the current head."""
    from alembic import command

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'head.db'}"
        upgrade(url)
        config = alembic_config(url)
        number = int(script_head()) + 1
        command.revision(config, message=message, autogenerate=True, rev_id=f"{number:04d}")
    print(f"wrote revision {number:04d}: review it, then set HEAD = \"{number:04d}\" in {__file__}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "revision":
        sys.exit('usage: python -m gpufleet.index.migrate revision "what changed"')
    _revision(sys.argv[2])
