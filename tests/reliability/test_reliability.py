"""The bounded reliability run (issue 11): on each backend, every nemesis at once.

Workers are killed and frozen, a submitter is killed mid-enqueue, and (where the
backend has them) Redis and PostgreSQL are restarted and the results disk is filled,
all interleaved over a few seconds; then every job must end, and every submitted
item must be ok or failed with a reason: none lost, duplicated, stale or
never-ending. The long run, one nemesis at a time: benchmarks/reliability.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.checker import ANOMALIES
from tests.reliability.nemeses import make
from tests.reliability.runner import Plan, run

PLAN = Plan(jobs=2, items=96, item_ms=60, workers=2, window_s=8, seed=11)


@pytest.mark.parametrize("backend", ["embedded", "redis+postgres"])
def test_every_item_ends_once_under_every_nemesis(backend: str, tmp_path: Path) -> None:
    # Given two jobs on two workers, and every nemesis this backend can suffer
    nemesis = make(["all"], items=96)
    # When they strike, in turn, then heal, and the fleet carries on
    outcome = run(tmp_path, backend, nemesis, PLAN)
    # Then the run happened: faults struck, and every submission was judged
    assert outcome.verdict is not None, outcome.skipped
    assert outcome.strikes > 0
    verdict = outcome.verdict
    judged = sum(verdict.counts.values())
    assert judged >= PLAN.jobs * PLAN.items, verdict.describe()
    # And every item ended exactly once, from its last attempt, and stayed as it ended
    assert {a: verdict.counts[a] for a in ANOMALIES} == dict.fromkeys(ANOMALIES, 0), \
        verdict.describe()
    # And the items of the submissions that were not interrupted all succeeded
    assert verdict.counts["ok"] >= PLAN.jobs * PLAN.items, verdict.describe()
