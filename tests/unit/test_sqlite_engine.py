"""The index's SQLite connections carry the settings its speed and safety rest on."""

from __future__ import annotations

from pathlib import Path

from gpufleet.index.engine import open_engine


def test_every_sqlite_connection_is_tuned_for_several_processes_and_batch_writes(
        tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'index.db'}")
    try:
        with engine.connect() as conn:
            pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                      for name in ("journal_mode", "synchronous", "foreign_keys", "temp_store",
                                   "cache_size")}
    finally:
        engine.dispose()
    # WAL, NORMAL (1), foreign keys on, statement journals in memory (2), not in /var/tmp,
    # a page cache of 16 MB (negative: KiB) that holds a batch's index pages.
    assert pragma == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1,
                      "temp_store": 2, "cache_size": -16384}
