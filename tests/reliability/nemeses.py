"""Nemeses: the faults a run suffers while its jobs are processed.

Each one strikes again and again during the run's fault window (the runner calls
``strike`` every second or so) and ``heal`` puts everything back when the window
closes. ``prepare`` says why a nemesis cannot run here (None when it can).
``Composite`` interleaves several, as a bounded run does to cover them all at once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from gpufleet.errors import GpufleetError
from gpufleet.index import Index
from tests.reliability.cluster import Cluster
from tests.reliability.history import Submission
from tests.reliability.submissions import submit


class Nemesis:
    name = "none"
    needs_mount = False
    may_strand = False  # may it lose tasks outright, so that only the sweeper ends the job?

    def prepare(self, cluster: Cluster) -> str | None:
        return None

    def strike(self, cluster: Cluster, rng: random.Random) -> None:
        return None

    def heal(self, cluster: Cluster) -> None:
        return None

    def submissions(self) -> list[Submission]:
        """Submissions this nemesis made (and interrupted) itself."""
        return []


class KillWorkers(Nemesis):
    """SIGKILL a random worker: no drain, no release, a lease left to expire."""

    name = "kill-workers"

    def strike(self, cluster: Cluster, rng: random.Random) -> None:
        live = cluster.live_workers()
        if live:
            rng.choice(live).kill()


class FreezeWorkers(Nemesis):
    """SIGSTOP a random worker (a GC pause, a stalled VM) and thaw it a few leases later,
    when another worker has taken its tasks over: it must write nothing stale."""

    name = "freeze-workers"

    def __init__(self) -> None:
        self.frozen: dict[int, tuple[subprocess.Popen[bytes], float]] = {}

    def strike(self, cluster: Cluster, rng: random.Random) -> None:
        now = time.monotonic()
        for pid, (proc, since) in list(self.frozen.items()):
            if now - since > 5:
                proc.send_signal(signal.SIGCONT)
                del self.frozen[pid]
        awake = [w for w in cluster.live_workers() if w.pid not in self.frozen]
        if len(awake) > 1:  # leave one awake, or nothing moves until the thaw
            victim = rng.choice(awake)
            victim.send_signal(signal.SIGSTOP)
            self.frozen[victim.pid] = (victim, now)

    def heal(self, cluster: Cluster) -> None:
        for proc, _ in self.frozen.values():
            proc.send_signal(signal.SIGCONT)
        self.frozen.clear()


class KillSubmitter(Nemesis):
    """Start another submission and SIGKILL its submitter partway: sometimes before the
    job exists, mostly while its tasks are being enqueued."""

    name = "kill-submitter"
    may_strand = True  # a submission killed between its job and its last task

    def __init__(self, *, items: int = 600) -> None:
        self.items = items
        self.made: list[Submission] = []

    def strike(self, cluster: Cluster, rng: random.Random) -> None:
        sub = submit(cluster, f"killed-{len(self.made)}", self.items)
        self.made.append(sub)
        assert sub.proc is not None
        # Mostly the moment its job row appears (its tasks are being enqueued), sometimes
        # at a random moment (before the job exists, or after it is all queued).
        on_sight = rng.random() < 0.7
        deadline = time.monotonic() + rng.uniform(0.3, 3.0)
        index = Index(cluster.db)
        try:
            while time.monotonic() < deadline and sub.proc.poll() is None:
                if on_sight and _has_job(index, sub.input):
                    break
                time.sleep(0.005)
        finally:
            sub.proc.kill()
            sub.proc.wait()
            sub.killed = True
            index.close()

    def submissions(self) -> list[Submission]:
        return self.made


class RestartRedis(Nemesis):
    """kill -9 the queue's redis-server, leave it down a moment, start it on the same data."""

    name = "restart-redis"
    may_strand = True  # kill -9 loses what the append-only file had not yet written

    def prepare(self, cluster: Cluster) -> str | None:
        return None if cluster.redis is not None else "the embedded backend has no Redis"

    def strike(self, cluster: Cluster, rng: random.Random) -> None:
        redis = cluster.redis
        if redis is None or rng.random() < 0.5:
            return
        assert redis.proc is not None
        redis.proc.kill()
        redis.proc.wait()
        time.sleep(rng.uniform(0.5, 3.0))
        redis.start()


class RestartPostgres(Nemesis):
    """Stop PostgreSQL at once (-m immediate: a crash), leave it down, start it again."""

    name = "restart-postgres"

    def prepare(self, cluster: Cluster) -> str | None:
        return None if cluster.postgres is not None else "the embedded backend has no PostgreSQL"

    def strike(self, cluster: Cluster, rng: random.Random) -> None:
        pg = cluster.postgres
        if pg is None or rng.random() < 0.5:
            return
        pg.stop()
        time.sleep(rng.uniform(0.5, 3.0))
        pg.start()


class FillResultsDisk(Nemesis):
    """Fill the results file system (a size-limited tmpfs) to the last byte, then free it."""

    name = "fill-disk"
    needs_mount = True

    def prepare(self, cluster: Cluster) -> str | None:
        if not cluster.mounted:
            return "cannot mount a size-limited tmpfs for the results (needs root)"
        return None

    def strike(self, cluster: Cluster, rng: random.Random) -> None:
        filler = cluster.results / "filler"
        if filler.exists():
            filler.unlink()
            return
        _fill(filler)

    def heal(self, cluster: Cluster) -> None:
        (cluster.results / "filler").unlink(missing_ok=True)


def _has_job(index: Index, input: str) -> bool:
    try:
        return any(j.input == input for j in index.jobs())
    except GpufleetError:  # the index is down (another nemesis): not seen yet
        return False


def _fill(path: Path) -> None:
    block = b"\0" * (1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, block)
    except OSError:  # ENOSPC: now full; fill the last partial block too
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
    finally:
        os.close(fd)


class Composite(Nemesis):
    """Several nemeses, one of them (at random) striking at a time."""

    def __init__(self, parts: list[Nemesis]) -> None:
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.needs_mount = any(p.needs_mount for p in parts)
        self.may_strand = any(p.may_strand for p in parts)
        self.active: list[Nemesis] = []

    def prepare(self, cluster: Cluster) -> str | None:
        self.active = [p for p in self.parts if p.prepare(cluster) is None]
        return None if self.active else "no part of it can run here"

    def strike(self, cluster: Cluster, rng: random.Random) -> None:
        rng.choice(self.active).strike(cluster, rng)

    def heal(self, cluster: Cluster) -> None:
        for part in self.active:
            part.heal(cluster)

    def submissions(self) -> list[Submission]:
        return [s for p in self.active for s in p.submissions()]


NEMESES: dict[str, type[Nemesis]] = {n.name: n for n in (
    KillWorkers, FreezeWorkers, KillSubmitter, RestartRedis, RestartPostgres, FillResultsDisk)}


def make(names: list[str], *, items: int = 600) -> Nemesis:
    """One nemesis by name, or several composed; "all" is every one of them. items: the
    size of each submission the submitter-killer interrupts."""
    if names == ["all"]:
        names = list(NEMESES)
    unknown = [n for n in names if n not in NEMESES]
    if unknown:
        raise ValueError(f"unknown nemesis {unknown[0]!r}: one of {', '.join(NEMESES)}, all")
    made = [KillSubmitter(items=items) if n == KillSubmitter.name else NEMESES[n]()
            for n in names]
    return made[0] if len(made) == 1 else Composite(made)
