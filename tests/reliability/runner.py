"""One reliability run: submit, strike, heal, wait for every job to end, observe, check."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from gpufleet.config import Settings
from gpufleet.errors import GpufleetError
from gpufleet.index import Index
from gpufleet.sweeper import sweep
from tests.reliability.checker import Verdict, check
from tests.reliability.cluster import Cluster
from tests.reliability.history import Observation, observe
from tests.reliability.nemeses import Nemesis
from tests.reliability.submissions import submit


@dataclass(frozen=True)
class Plan:
    jobs: int = 2  # submissions made before the faults (the nemesis may make more)
    items: int = 120  # per submission
    item_ms: float = 60  # the synthetic model's cost per item
    workers: int = 2
    window_s: float = 8  # how long the nemesis strikes
    strike_every_s: float = 1.0  # on average
    bound_s: float = 180  # how long after healing every job must have ended
    seed: int = 0


@dataclass
class Outcome:
    backend: str
    nemesis: str
    verdict: Verdict | None  # None: skipped
    skipped: str | None = None
    strikes: int = 0
    seconds: float = 0.0


def run(root: Path, backend: str, nemesis: Nemesis, plan: Plan) -> Outcome:
    started = time.monotonic()
    cluster = Cluster(root, backend, item_ms=plan.item_ms, results_mount=nemesis.needs_mount)
    try:
        cluster.start()
        reason = nemesis.prepare(cluster)
        if reason is not None:
            return Outcome(backend, nemesis.name, None, skipped=reason)
        rng = random.Random(plan.seed)
        subs = [submit(cluster, f"job-{i}", plan.items) for i in range(plan.jobs)]
        cluster.keep_workers(plan.workers)
        _until_working(cluster)
        strikes = _strike(cluster, nemesis, plan, rng)
        nemesis.heal(cluster)
        subs += nemesis.submissions()
        for sub in subs:
            sub.settle()
        ended = _until_ended(cluster, plan)
        cluster.drain_workers()
        after = observe(cluster.db, cluster.results)
        verdict = check(subs, ended, after, may_strand=nemesis.may_strand)
        return Outcome(backend, nemesis.name, verdict, strikes=strikes,
                       seconds=time.monotonic() - started)
    finally:
        cluster.stop()


def _until_working(cluster: Cluster, timeout_s: float = 120) -> None:
    """Wait for the first results, so the faults land on workers at work, not booting."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        index = Index(cluster.db)
        try:
            if any(job.counts.done for job in index.jobs()):
                return
        finally:
            index.close()
        time.sleep(0.1)
    raise RuntimeError("no work was done before the faults began:\n" + cluster.logs())


def _strike(cluster: Cluster, nemesis: Nemesis, plan: Plan, rng: random.Random) -> int:
    """Strike until the window closes, replacing dead workers as a fleet would."""
    strikes = 0
    end = time.monotonic() + plan.window_s
    while time.monotonic() < end:
        time.sleep(rng.uniform(0.2, 1.8) * plan.strike_every_s)
        nemesis.strike(cluster, rng)
        strikes += 1
        cluster.keep_workers(plan.workers)
    return strikes


def _until_ended(cluster: Cluster, plan: Plan) -> Observation:
    """Keep the fleet up and sweep as the controller does, until every job has ended or the
    bound has passed; what was seen last. Jobs still open then are never-ending."""
    settings = Settings.from_env(cluster.env)
    deadline = time.monotonic() + plan.bound_s
    while True:
        cluster.keep_workers(plan.workers)
        try:
            index = Index(cluster.db)
            try:
                sweep(settings, index)
            finally:
                index.close()
            seen = observe(cluster.db, cluster.results)
        except GpufleetError:  # a nemesis left the index down: that is never-ending too
            if time.monotonic() > deadline:
                raise
        else:
            if not seen.unfinished() or time.monotonic() > deadline:
                return seen
        time.sleep(1.0)
