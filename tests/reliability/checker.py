"""The checker: every submitted item is ok, failed (ended with a reason), lost, duplicated,
stale or never-ending; whatever the system holds that nobody submitted is unexpected.

- **lost**: the job ended (or its submitter said it exists) and the item has no row,
  or its row says done and there is no result object.
- **duplicated**: more than one job for one submission, more than one row for an item.
- **stale**: the result object and the row disagree (their last writes came from
  different attempts: a fenced worker wrote one of them), or either changed after the
  job had ended (a worker whose lease was gone wrote over a finished job).
- **never-ending**: the item is still pending, or its job has not ended, when the
  bound after the nemesis has passed.
- **repaired**: under a nemesis that should strand nothing, the sweeper had to
  enqueue a job's pending items again: work was lost and only the safety net caught
  it (a PostgreSQL crash losing commits it had acknowledged was found this way).
- **not created**: items of a submission killed before it made its job: never
  acknowledged, so not owed (Jepsen's "unacknowledged, absent": fine).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tests.reliability.history import Observation, Row, Submission, parse_object

ANOMALIES = ("lost", "duplicated", "stale", "never_ending", "unexpected", "repaired")
CATEGORIES = ("ok", "failed", *ANOMALIES, "not_created")


@dataclass
class Verdict:
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, category: str, what: str, n: int = 1) -> None:
        self.counts[category] += n
        found = self.examples.setdefault(category, [])
        if category != "ok" and len(found) < 5:
            found.append(what)

    @property
    def anomalies(self) -> int:
        return sum(self.counts[c] for c in ANOMALIES)

    def describe(self) -> str:
        counts = ", ".join(f"{c} {self.counts[c]}" for c in CATEGORIES if self.counts[c])
        shown = "".join(f"\n  {c}: {'; '.join(e)}" for c, e in self.examples.items() if e)
        return counts + shown


def check(submissions: list[Submission], ended: Observation, after: Observation, *,
          may_strand: bool = True) -> Verdict:
    """Judge every submitted item against what was seen when the jobs had ended (ended) and
    once every worker was gone (after). may_strand: the faults may lose tasks outright (a
    killed submitter, Redis losing its last writes), so the sweeper's repairs are fine."""
    verdict = Verdict()
    if not may_strand:
        for job, times in sorted(after.requeued.items()):
            verdict.add("repaired", f"job {job}: the sweeper re-enqueued its stranded items "
                        f"{times} time(s)", times)
    claimed: set[str] = set()
    for sub in submissions:
        jobs = sorted(j for j, (_, input) in ended.jobs.items() if input == sub.input)
        claimed.update(jobs)
        if len(jobs) > 1:
            verdict.add("duplicated", f"{len(jobs)} jobs for input {sub.input}", len(sub.keys))
            continue
        if not jobs:
            if sub.job is None and sub.killed:
                verdict.add("not_created", sub.input, len(sub.keys))
            else:
                verdict.add("lost", f"job {sub.job} of {sub.input} is gone", len(sub.keys))
            continue
        _check_job(verdict, sub, jobs[0], ended, after)
    for job in ended.jobs:
        if job not in claimed:
            verdict.add("unexpected", f"job {job} nobody submitted")
    return verdict


def _check_job(verdict: Verdict, sub: Submission, job: str, ended: Observation,
               after: Observation) -> None:
    state = ended.jobs[job][0]
    rows, objects = ended.rows.get(job, {}), ended.objects.get(job, {})
    later_rows, later_objects = after.rows.get(job, {}), after.objects.get(job, {})
    finished = state in ("succeeded", "partial", "failed", "cancelled")
    wanted = set(sub.keys)
    for key in sub.keys:
        what, name = f"{job}/{key}", f"{key}.json"
        found = rows.get(key, [])
        if len(found) > 1:
            verdict.add("duplicated", f"{what}: {len(found)} rows")
        elif not finished or (found and found[0].status == "pending"):
            verdict.add("never_ending", f"{what}: job {state}, row "
                        f"{found[0].status if found else 'missing'}")
        elif not found:
            verdict.add("lost", f"{what}: no row")
        elif found[0].status == "done" and name not in objects:
            verdict.add("lost", f"{what}: done without a result object")
        elif name in objects and not _agree(found[0], objects[name]):
            verdict.add("stale", f"{what}: object and row from different attempts "
                        f"({found[0]} vs {objects[name][:160]!r})")
        elif later_rows.get(key) != found or later_objects.get(name) != objects.get(name):
            verdict.add("stale", f"{what}: rewritten after the job ended "
                        f"({found} -> {later_rows.get(key)})")
        else:
            verdict.add("failed" if found[0].status == "failed" else "ok", what)
    for key in rows.keys() - wanted:
        verdict.add("unexpected", f"{job}/{key}: a row for a key nobody submitted")
    for name in objects.keys() - {f"{k}.json" for k in wanted}:
        verdict.add("unexpected", f"{job}/{name}: an object for a key nobody submitted")


def _agree(row: Row, body: bytes) -> bool:
    doc = parse_object(body)
    return doc is not None and (doc.get("status"), doc.get("worker"),
                                doc.get("finished_at")) == (row.status, row.worker,
                                                            row.finished_at)
