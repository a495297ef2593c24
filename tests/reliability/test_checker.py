"""The checker itself, on hand-built histories: it must pass a clean run and flag each
anomaly it exists to find (lost, duplicated, stale, never-ending, unexpected, repaired), so a
reliability run with zero anomalies means the system held, not that the checker was blind."""

from __future__ import annotations

import json

from tests.reliability.checker import ANOMALIES, Verdict, check
from tests.reliability.history import Observation, Row, Submission

INPUT = "file:///in/job-a/"
KEYS = ["a.bin", "b.bin", "c.bin"]


def _body(status: str, worker: str | None, finished_at: float | None) -> bytes:
    return json.dumps({"key": "?", "status": status, "worker": worker,
                       "finished_at": finished_at, "tags": []}).encode()


def _ended(state: str = "succeeded", *, job: str = "j1", input: str = INPUT,
           keys: list[str] = KEYS) -> Observation:
    """A job whose every item was done by worker w1, with the matching result objects."""
    seen = Observation()
    seen.jobs[job] = (state, input)
    seen.rows[job] = {k: [Row("done", "w1", 10.0 + i)] for i, k in enumerate(keys)}
    seen.objects[job] = {f"{k}.json": _body("done", "w1", 10.0 + i) for i, k in enumerate(keys)}
    return seen


def _copy(seen: Observation) -> Observation:
    return Observation(jobs=dict(seen.jobs),
                       rows={j: {k: list(r) for k, r in rows.items()}
                             for j, rows in seen.rows.items()},
                       objects={j: dict(o) for j, o in seen.objects.items()})


def _sub() -> Submission:
    """A submission whose submitter said its job is j1."""
    return Submission(input=INPUT, keys=list(KEYS), job="j1")


def _anomalies(verdict: Verdict) -> dict[str, int]:
    return {a: verdict.counts[a] for a in ANOMALIES if verdict.counts[a]}


def test_a_clean_history_has_no_anomaly() -> None:
    # Given a job that ended with every item done, seen the same after the workers left
    ended = _ended()
    # When it is checked
    verdict = check([_sub()], ended, _copy(ended))
    # Then every item is ok and nothing is flagged
    assert verdict.anomalies == 0, verdict.describe()
    assert verdict.counts["ok"] == len(KEYS)


def test_an_item_failed_with_a_reason_is_not_an_anomaly() -> None:
    ended = _ended("partial")
    ended.rows["j1"]["b.bin"] = [Row("failed", "w1", 11.0)]
    ended.objects["j1"]["b.bin.json"] = _body("failed", "w1", 11.0)
    verdict = check([_sub()], ended, _copy(ended))
    assert verdict.anomalies == 0, verdict.describe()
    assert (verdict.counts["ok"], verdict.counts["failed"]) == (2, 1)


def test_an_item_without_a_row_in_an_ended_job_is_lost() -> None:
    ended = _ended()
    del ended.rows["j1"]["b.bin"]
    del ended.objects["j1"]["b.bin.json"]
    verdict = check([_sub()], ended, _copy(ended))
    assert _anomalies(verdict) == {"lost": 1}, verdict.describe()
    assert "j1/b.bin: no row" in verdict.describe()


def test_an_item_done_without_its_result_object_is_lost() -> None:
    ended = _ended()
    del ended.objects["j1"]["c.bin.json"]
    verdict = check([_sub()], ended, _copy(ended))
    assert _anomalies(verdict) == {"lost": 1}, verdict.describe()


def test_a_job_that_vanished_loses_all_its_items() -> None:
    # Given a submitter that said its job exists, and an index without it
    verdict = check([_sub()], Observation(), Observation())
    assert _anomalies(verdict) == {"lost": len(KEYS)}, verdict.describe()


def test_a_killed_submitter_without_a_job_is_not_owed_anything() -> None:
    verdict = check([Submission(input=INPUT, keys=list(KEYS), killed=True)],
                    Observation(), Observation())
    assert verdict.anomalies == 0, verdict.describe()
    assert verdict.counts["not_created"] == len(KEYS)


def test_two_rows_for_one_item_are_duplicated() -> None:
    ended = _ended()
    ended.rows["j1"]["a.bin"].append(Row("done", "w2", 20.0))
    verdict = check([_sub()], ended, _copy(ended))
    assert _anomalies(verdict) == {"duplicated": 1}, verdict.describe()


def test_two_jobs_for_one_submission_duplicate_all_its_items() -> None:
    # Given one submission whose input two jobs claim
    ended = _ended()
    second = _ended(job="j2")
    ended.jobs.update(second.jobs)
    ended.rows.update(second.rows)
    ended.objects.update(second.objects)
    verdict = check([_sub()], ended, _copy(ended))
    assert _anomalies(verdict) == {"duplicated": len(KEYS)}, verdict.describe()


def test_an_object_and_a_row_from_different_attempts_are_stale() -> None:
    # Given a result object written by a fenced worker w2 over w1's recorded row
    ended = _ended()
    ended.objects["j1"]["a.bin.json"] = _body("done", "w2", 30.0)
    verdict = check([_sub()], ended, _copy(ended))
    assert _anomalies(verdict) == {"stale": 1}, verdict.describe()
    assert "different attempts" in verdict.describe()


def test_a_row_rewritten_after_the_job_ended_is_stale() -> None:
    ended = _ended()
    after = _copy(ended)
    after.rows["j1"]["b.bin"] = [Row("done", "w2", 40.0)]
    verdict = check([_sub()], ended, after)
    assert _anomalies(verdict) == {"stale": 1}, verdict.describe()
    assert "rewritten after the job ended" in verdict.describe()


def test_an_object_rewritten_after_the_job_ended_is_stale() -> None:
    ended = _ended()
    after = _copy(ended)
    after.objects["j1"]["c.bin.json"] = _body("done", "w2", 40.0)
    verdict = check([_sub()], ended, after)
    assert _anomalies(verdict) == {"stale": 1}, verdict.describe()


def test_items_of_a_job_that_never_ended_are_never_ending() -> None:
    # Given a job still running when the bound passed, one item still pending
    ended = _ended("running")
    ended.rows["j1"]["c.bin"] = [Row("pending", None, None)]
    del ended.objects["j1"]["c.bin.json"]
    verdict = check([_sub()], ended, _copy(ended))
    # Then every item of it is never-ending, done or not: the job did not end
    assert _anomalies(verdict) == {"never_ending": len(KEYS)}, verdict.describe()


def test_a_pending_item_in_an_ended_job_is_never_ending() -> None:
    ended = _ended("partial")
    ended.rows["j1"]["c.bin"] = [Row("pending", None, None)]
    del ended.objects["j1"]["c.bin.json"]
    verdict = check([_sub()], ended, _copy(ended))
    assert _anomalies(verdict) == {"never_ending": 1}, verdict.describe()


def test_a_sweeper_repair_is_an_anomaly_only_where_nothing_should_be_stranded() -> None:
    # Given a job that ended well only because the sweeper enqueued its items again
    ended = _ended()
    after = _copy(ended)
    after.requeued = {"j1": 1}
    # Then under faults that may lose tasks (a killed submitter, Redis restarted) it is fine
    assert check([_sub()], ended, after, may_strand=True).anomalies == 0
    # And under faults that should lose nothing, work was lost and covered up
    verdict = check([_sub()], ended, after, may_strand=False)
    assert _anomalies(verdict) == {"repaired": 1}
    assert "re-enqueued its stranded items 1 time(s)" in verdict.describe()


def test_what_nobody_submitted_is_unexpected() -> None:
    # Given a stray job, and a row and an object for a key nobody submitted
    ended = _ended()
    stray = _ended(job="j9", input="file:///in/nobody/", keys=["z.bin"])
    ended.jobs.update(stray.jobs)
    ended.rows.update(stray.rows)
    ended.objects.update(stray.objects)
    ended.rows["j1"]["x.bin"] = [Row("done", "w1", 50.0)]
    ended.objects["j1"]["y.bin.json"] = _body("done", "w1", 50.0)
    verdict = check([_sub()], ended, _copy(ended))
    assert _anomalies(verdict) == {"unexpected": 3}, verdict.describe()
    assert verdict.counts["ok"] == len(KEYS)


def test_examples_are_kept_for_anomalies_only_and_bounded() -> None:
    verdict = Verdict()
    for i in range(8):
        verdict.add("lost", f"item {i}")
        verdict.add("ok", f"fine {i}")
    assert verdict.counts["lost"] == 8 and verdict.anomalies == 8
    assert verdict.examples["lost"] == [f"item {i}" for i in range(5)]
    assert verdict.examples["ok"] == []
