"""One suite every index backend passes: jobs, idempotent upserts, tag search, workers,
concurrent writers in several processes, and migrations that match index/schema.py.

SQLite is a file in tmp_path; PostgreSQL a fresh database on a throwaway
cluster (initdb + pg_ctl on a free port), migrated the way `gpufleet init`
migrates it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from gpufleet.domain import ItemResult, ItemStatus, JobState, Tag
from gpufleet.errors import ConfigError, IndexUnavailable, JobFinished, JobNotFound
from gpufleet.index import Index
from gpufleet.index.engine import open_engine
from gpufleet.index.migrate import (
    HEAD,
    INITIAL,
    alembic_config,
    schema_diff,
    script_head,
    upgrade,
)
from gpufleet.index.schema import metadata
from tests.servers import free_port

Clock = list[float]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.db'}"
    url: str = request.getfixturevalue("postgres_url")
    upgrade(url)  # what `gpufleet init` does
    return url


@pytest.fixture
def clock() -> Clock:
    return [1000.0]


@pytest.fixture
def index(db_url: str, clock: Clock) -> Iterator[Index]:
    idx = Index(db_url, clock=lambda: clock[0])
    yield idx
    idx.close()


def _done(key: str, label: str = "tabby", score: float = 0.9, job: str = "j1") -> ItemResult:
    return ItemResult(job=job, key=key, status=ItemStatus.DONE,
                      tags=(Tag("n02123045", label, score), Tag("n02124075", "Egyptian cat", 0.05)))


# -- jobs and results --------------------------------------------------------------------


def test_a_new_job_is_queued_with_every_item_pending(index: Index) -> None:
    job = index.create_job("j1", model="m", input="file:///in/", output="file:///out/",
                           keys=["a", "b", "c"])
    assert job.state is JobState.QUEUED
    assert (job.counts.total, job.counts.pending) == (3, 3)
    assert [j.id for j in index.jobs()] == ["j1"]
    assert index.models() == ["m"]


def test_recording_the_same_result_twice_leaves_one_row_and_one_set_of_tags(index: Index
                                                                            ) -> None:
    # Given a job with two items
    index.create_job("j1", model="m", input="i", output="o", keys=["a", "b"])
    # When item a's result is recorded twice (a redelivered task)
    index.record([_done("a")])
    index.record([_done("a")])
    # Then there is one row, tried twice, with its two tags once
    rows = index.results("j1")
    assert [r.key for r in rows] == ["a", "b"]
    assert rows[0].attempts == 2
    assert [t.label for t in rows[0].tags] == ["tabby", "Egyptian cat"]
    assert index.job("j1").state is JobState.RUNNING


def test_one_batch_with_the_same_item_twice_keeps_the_last_outcome(index: Index) -> None:
    # Given a batch in which one item appears twice (a task received twice by one worker)
    index.create_job("j1", model="m", input="i", output="o", keys=["a"])
    failed = ItemResult(job="j1", key="a", status=ItemStatus.FAILED, error="timeout")
    # When it is recorded, then it is one row with the last outcome and its tags once
    index.record([failed, _done("a")])
    [row] = index.results("j1")
    assert (row.status, row.error, len(row.tags)) == ("done", None, 2)


def test_a_batch_larger_than_one_statement_is_recorded_whole_and_rerun_in_place(
        index: Index) -> None:
    # Given a job of 1,234 items (more than two multi-row statements' worth, 500 each)
    keys = [f"photos/{i:05d}.jpg" for i in range(1234)]
    index.create_job("j1", model="m", input="i", output="o", keys=keys)
    # When every result is recorded in one batch, a fifth of them failed, then all again
    results = [_done(k) if i % 5 else ItemResult(job="j1", key=k, status=ItemStatus.FAILED,
                                                 error=f"bad {i}")
               for i, k in enumerate(keys)]
    index.record(results)
    index.record(results)
    # Then each item has one row, tried twice, with its own outcome and its tags once
    rows = list(index.iter_results("j1"))
    assert [r.key for r in rows] == keys
    assert {r.attempts for r in rows} == {2}
    for i, row in enumerate(rows):
        if i % 5:
            assert (row.status, row.error, len(row.tags)) == ("done", None, 2)
        else:
            assert (row.status, row.error, row.tags) == ("failed", f"bad {i}", ())
    counts = index.job("j1").counts
    assert (counts.done, counts.failed, counts.pending) == (987, 247, 0)


def test_a_rerun_with_another_outcome_replaces_the_tags_and_odd_text_comes_back_as_written(
        index: Index) -> None:
    # Given items whose keys and labels hold what COPY and SQL escape (tab, newline,
    # backslash, quotes, NUL-free unicode)
    keys = ["a\tb.jpg", "line\nbreak.jpg", "back\\slash.jpg", "it's \"quoted\".jpg",
            "photos/\u00e9t\u00e9 \u2603.jpg"]
    index.create_job("j1", model="m", input="i", output="o", keys=keys)
    odd = (Tag("n1", "tab\there", 0.5), Tag("n2", "\\N", 0.25), Tag("n3", "caf\u00e9 \"x\"", 0.125))
    index.record([ItemResult(job="j1", key=k, status=ItemStatus.DONE, tags=odd) for k in keys])
    assert {r.key: r.tags for r in index.iter_results("j1")} == {k: odd for k in keys}
    # When the first item is rerun and fails, and the second is rerun with one tag
    index.record([ItemResult(job="j1", key=keys[0], status=ItemStatus.FAILED, error="gone"),
                  ItemResult(job="j1", key=keys[1], status=ItemStatus.DONE,
                             tags=(Tag("n9", "other", 0.9),))])
    # Then the first has no tags, the second its new one alone, the rest are untouched
    found = {r.key: (r.status, r.attempts, r.tags) for r in index.iter_results("j1")}
    assert found[keys[0]] == ("failed", 2, ())
    assert found[keys[1]] == ("done", 2, (Tag("n9", "other", 0.9),))
    assert all(found[k] == ("done", 1, odd) for k in keys[2:])
    assert {r.key for r in index.results("j1", tag="CAF\u00c9 \"X\"")} == set(keys[2:])


def test_job_state_follows_the_counts(index: Index) -> None:
    index.create_job("j1", model="m", input="i", output="o", keys=["a", "b"])
    index.record([_done("a"), ItemResult(job="j1", key="b", status=ItemStatus.FAILED,
                                         error="image is truncated")])
    job = index.job("j1")
    assert job.state is JobState.PARTIAL
    assert (job.counts.done, job.counts.failed, job.counts.pending) == (1, 1, 0)
    assert index.results("j1")[1].error == "image is truncated"


def test_skipped_items_are_counted_and_a_job_of_done_and_skipped_items_succeeds(
        index: Index) -> None:
    # Given a job of three items, with a preprocessing chain
    job = index.create_job("j1", model="m", input="i", output="o", keys=["a", "b", "c"],
                           preprocess="exif,min-size=64")
    assert job.preprocess == "exif,min-size=64"
    # When one is done and two are skipped by a filter
    skipped = [ItemResult(job="j1", key=k, status=ItemStatus.SKIPPED,
                          error="32x32 is under min-size=64") for k in ("b", "c")]
    index.record([_done("a"), *skipped])
    # Then they are counted as skipped, not failed, and the job succeeded
    job = index.job("j1")
    c = job.counts
    assert (c.done, c.failed, c.skipped, c.pending) == (1, 0, 2, 0)
    assert job.state is JobState.SUCCEEDED
    assert job.summary()["skipped"] == 2
    assert job.summary()["preprocess"] == "exif,min-size=64"
    rows = {r.key: r for r in index.results("j1")}
    assert (rows["b"].status, rows["b"].error) == ("skipped", "32x32 is under min-size=64")
    # And a skipped item is an outcome: a redelivered task does not redo it
    assert index.recorded("j1", ["a", "b", "c"]) == {"a", "b", "c"}
    assert [j.preprocess for j in index.jobs()] == ["exif,min-size=64"]


def test_fail_pending_only_touches_items_without_an_outcome(index: Index) -> None:
    index.create_job("j1", model="m", input="i", output="o", keys=["a", "b"])
    index.record([_done("a")])
    assert index.fail_pending("j1", ["a", "b"], error="dead-lettered: boom") == 1
    statuses = {r.key: r.status for r in index.results("j1")}
    assert statuses == {"a": "done", "b": "failed"}


def test_cancel_ends_pending_items_cancelled_and_the_counts_add_up(index: Index) -> None:
    # Given a job of four items: one done, one failed, one running, one not started
    index.create_job("j1", model="m", input="i", output="o", keys=["a", "b", "c", "d"])
    index.record([_done("a"), ItemResult(job="j1", key="b", status=ItemStatus.FAILED,
                                         error="image is truncated")])
    # When it is cancelled (twice: a repeat changes nothing)
    index.cancel_job("j1")
    job = index.cancel_job("j1")
    # Then its unfinished items are cancelled, and done + failed + cancelled = total
    assert job.state is JobState.CANCELLED
    c = job.counts
    assert (c.done, c.failed, c.cancelled, c.pending, c.total) == (1, 1, 2, 0, 4)
    assert {r.key: r.status for r in index.results("j1")}["d"] == "cancelled"
    # And the item that was running finishes with its own outcome; the counts still add up
    index.record([_done("c")])
    c = index.job("j1").counts
    assert (c.done, c.cancelled, c.pending) == (2, 1, 0)
    assert index.job("j1").state is JobState.CANCELLED


def test_a_finished_job_cannot_be_cancelled(index: Index) -> None:
    index.create_job("j1", model="m", input="i", output="o", keys=["a"])
    index.record([_done("a")])
    with pytest.raises(JobFinished, match="succeeded"):
        index.cancel_job("j1")
    assert index.job("j1").state is JobState.SUCCEEDED
    with pytest.raises(JobNotFound):
        index.cancel_job("nope")


def test_results_filter_by_label_or_wordnet_id_and_page_by_key(index: Index) -> None:
    index.create_job("j1", model="m", input="i", output="o", keys=["a", "b", "c"])
    index.record([_done("a"), _done("b", label="tiger cat"), _done("c")])
    assert [r.key for r in index.results("j1", tag="Tabby")] == ["a", "c"]
    assert [r.key for r in index.results("j1", tag="n02123045")] == ["a", "b", "c"]
    assert [r.key for r in index.results("j1", after="a", limit=1)] == ["b"]
    assert [r.key for r in index.iter_results("j1")] == ["a", "b", "c"]


def test_a_large_job_pages_through_every_item(index: Index) -> None:
    keys = [f"photos/{i:05d}.jpg" for i in range(12_000)]  # over one insert statement
    index.create_job("big", model="m", input="i", output="o", keys=keys)
    assert index.job("big").counts.total == 12_000
    assert [r.key for r in index.iter_results("big")] == keys


def test_deleting_a_job_removes_its_items_and_tags(index: Index) -> None:
    index.create_job("j1", model="m", input="i", output="o", keys=["a"])
    index.record([_done("a")])
    index.delete_job("j1")
    with pytest.raises(JobNotFound):
        index.job("j1")
    assert index.results("j1") == []


def test_an_unknown_job_is_a_clear_error(index: Index) -> None:
    with pytest.raises(JobNotFound, match="no job 'nope'"):
        index.job("nope")


def test_workers_are_live_until_they_stop_or_go_quiet(index: Index, clock: Clock) -> None:
    index.worker_seen("w1", host="h", pid=1, model="m", state="busy")
    index.worker_seen("w2", host="h", pid=2, model="m", state="stopped")
    index.worker_seen("w1", host="h", pid=1, model="m", state="ready", bootstrap_s=3.5)
    [w1] = index.live_workers(model="m")
    assert (w1.id, w1.state, w1.bootstrap_s) == ("w1", "ready", 3.5)
    clock[0] += 60
    assert index.live_workers(model="m", within_s=30) == []


# -- several processes at once -------------------------------------------------------------


def _record_in_process(url: str, worker: int, keys: list[str], rounds: int) -> None:
    """One worker process: records every key, in its own order, batch by batch."""
    index = Index(url)
    turn = worker * len(keys) // 4
    order = keys[turn:] + keys[:turn]
    if worker % 2:
        order.reverse()
    for _ in range(rounds):
        for start in range(0, len(order), 25):
            index.record([_done(k, label=f"w{worker}") for k in order[start:start + 25]])
    index.close()


def test_concurrent_upserts_from_several_processes(db_url: str) -> None:
    # Given a job, and four worker processes that each record every item, in different
    # orders and batches, three times over (redeliveries racing each other)
    keys = [f"k{i:04d}" for i in range(200)]
    index = Index(db_url)
    index.create_job("j1", model="m", input="i", output="o", keys=keys)
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=_record_in_process, args=(db_url, w, keys, 3))
             for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    # Then every process finished cleanly: no deadlock, no duplicate key error
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    # And every item is one done row, recorded 12 times, with exactly one set of tags
    rows = list(index.iter_results("j1"))
    assert [r.key for r in rows] == keys
    assert {r.status for r in rows} == {"done"}
    assert {r.attempts for r in rows} == {12}
    assert {len(r.tags) for r in rows} == {2}
    assert index.job("j1").state is JobState.SUCCEEDED
    index.close()


# -- migrations ------------------------------------------------------------------------------


def test_the_migrated_database_matches_the_schema(db_url: str) -> None:
    # Given a database brought to the head revision (and, for SQLite, opened by Index too)
    upgrade(db_url)
    engine = open_engine(db_url)
    # Then Alembic finds no difference from index/schema.py: a schema change needs a revision
    with engine.connect() as conn:
        diff = schema_diff(conn)
    engine.dispose()
    assert diff == [], ("index/schema.py differs from the migrations; add a revision: "
                        f"python -m gpufleet.index.migrate revision '...'\n{diff}")


def test_head_is_the_newest_migration_script() -> None:
    assert script_head() == HEAD


def test_migrating_twice_changes_nothing(db_url: str) -> None:
    first = upgrade(db_url)
    again = upgrade(db_url)
    assert first.after == again.after == HEAD
    assert again.describe() == f"already at revision {HEAD} (head)"


def test_init_adopts_a_sqlite_index_made_without_migrations(tmp_path: Path) -> None:
    # Given an embedded index that Index created by itself (no Alembic involved)
    url = f"sqlite:///{tmp_path / 'index.db'}"
    index = Index(url)
    index.create_job("j1", model="m", input="i", output="o", keys=["a"])
    index.close()
    # When it is migrated, then its tables are adopted at the head revision, data kept
    migration = upgrade(url)
    assert (migration.before, migration.after, migration.adopted) == (None, HEAD, True)
    assert Index(url).job("j1").counts.total == 1


def test_a_sqlite_index_of_an_older_gpufleet_is_refused_until_init_upgrades_it(
        tmp_path: Path) -> None:
    # Given an embedded index at the first revision (made by an older gpufleet)
    from alembic import command

    url = f"sqlite:///{tmp_path / 'index.db'}"
    command.upgrade(alembic_config(url), INITIAL)
    # When this gpufleet opens it, then it says what to do, in one line
    with pytest.raises(ConfigError, match=r"predates this gpufleet .* run `gpufleet init`"):
        Index(url)
    # And once init has migrated it, it opens
    assert upgrade(url).after == HEAD
    Index(url).close()


def test_tags_written_before_the_label_column_are_found_after_the_upgrade(
        tmp_path: Path, db_url: str) -> None:
    # Given an index at revision 0002 holding tags (label only, as an older gpufleet wrote)
    from alembic import command

    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{tmp_path / 'older.db'}"
    else:
        command.downgrade(alembic_config(db_url), "0002")
    command.upgrade(alembic_config(db_url), "0002")
    engine = open_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tags (job_id, key, rank, tag_id, label, score) VALUES "
                          "('j1', 'a', 0, 'n1', 'Tabby', 0.9), "
                          "('j1', 'b', 0, 'n2', 'ÉCLAIR', 0.8)"))
    engine.dispose()
    # When it is upgraded to the head
    assert upgrade(db_url).after == HEAD
    # Then each label is stored lower-cased as Python lower-cases it (SQLite's lower() would
    # leave the É), so the indexed search finds both
    engine = open_engine(db_url)
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT key, label_lower FROM tags")).all())
    engine.dispose()
    assert stored == {"a": "tabby", "b": "éclair"}


def test_postgres_needs_init_before_use(postgres_url: str) -> None:
    # Given an empty PostgreSQL database
    # When an Index opens it, then it is refused with what to do
    with pytest.raises(ConfigError, match="run `gpufleet init`"):
        Index(postgres_url)
    # And after the migrations it opens, on the psycopg 3 driver
    migration = upgrade(postgres_url)
    assert (migration.before, migration.after) == (None, HEAD)
    index = Index(postgres_url)
    assert index.engine.dialect.driver == "psycopg"
    index.close()


def test_a_postgres_index_at_another_revision_is_refused(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(ConfigError, match="revision 9999"):
        Index(postgres_url)


def test_an_unreachable_postgres_is_index_unavailable() -> None:
    with pytest.raises(IndexUnavailable, match=r"127\.0\.0\.1"):
        Index(f"postgresql://nobody@127.0.0.1:{free_port()}/gpufleet")
    with pytest.raises(IndexUnavailable):
        upgrade(f"postgresql://nobody@127.0.0.1:{free_port()}/gpufleet")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url"])
def test_other_index_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="index URL"):
        Index(url)


def test_every_table_is_created_by_the_migrations(tmp_path: Path, db_url: str) -> None:
    # Given a new database (SQLite: a file no Index has opened), migrated
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{tmp_path / 'migrated.db'}"
    upgrade(db_url)
    # Then every table of index/schema.py is there, and the revision table
    engine = open_engine(db_url)
    assert set(inspect(engine).get_table_names()) == {*metadata.tables, "alembic_version"}
    engine.dispose()


def test_the_migrations_downgrade_to_nothing(tmp_path: Path, db_url: str) -> None:
    from alembic import command

    from gpufleet.index.migrate import alembic_config

    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{tmp_path / 'down.db'}"
    upgrade(db_url)
    command.downgrade(alembic_config(db_url), "base")
    engine = open_engine(db_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
