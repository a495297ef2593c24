"""What the simulator records about jobs and workers, and the results it derives from them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from gpufleet.domain import Capacity, WorkerState
from gpufleet.simulator.traces import Batch, Trace

__all__ = ["BatchResult", "JobRecord", "Prices", "SimResult", "WorkerRecord", "account",
           "percentile"]


@dataclass
class JobRecord:
    batch: Batch
    queued: int
    remaining: int  # queued + in flight
    done_at: float | None = None
    latencies: list[tuple[float, int]] = field(default_factory=list)  # (latency, items)


@dataclass
class WorkerRecord:
    id: str
    capacity: Capacity
    started_at: float
    state: WorkerState = WorkerState.BOOTING
    idle_since: float | None = None
    ready_at: float | None = None
    ended_at: float | None = None
    busy_s: float = 0.0
    slice: tuple[JobRecord, int, float, float] | None = None  # job, items, start, duration
    proc: Any = None  # the SimPy process


@dataclass(frozen=True, slots=True)
class BatchResult:
    id: str
    at: float
    items: int
    deadline_s: float
    makespan_s: float | None  # None: not finished by the end of the simulation
    met: bool
    items_done: int  # each item counted once, however often its slice was released


@dataclass(frozen=True)
class SimResult:
    policy: str
    trace: str
    seed: int
    gpu_hours: float
    cost: float
    idle_gpu_hours: float
    p95_latency_s: float
    deadlines_met: int
    deadlines_total: int
    batches: tuple[BatchResult, ...]
    workers_started: int
    interruptions: int
    on_demand_hours: float
    timeline: tuple[tuple[float, int, int], ...] = field(repr=False)  # (t, workers, backlog)
    setting: str = ""  # how the policy was configured, e.g. a baseline's target

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        del doc["timeline"]
        return doc


@dataclass(frozen=True, slots=True)
class Prices:
    spot_per_h: float
    on_demand_per_h: float


def account(policy: str, trace: Trace, seed: int, prices: Prices, now: float,
            workers: Iterable[WorkerRecord], jobs: Iterable[JobRecord], interruptions: int,
            timeline: list[tuple[float, int, int]]) -> SimResult:
    """Bill every worker from start to exit (or now) and score every batch."""
    gpu_s = idle_s = od_s = cost = 0.0
    started = 0
    for w in workers:
        started += 1
        life = (w.ended_at if w.ended_at is not None else now) - w.started_at
        boot = life if w.ready_at is None else w.ready_at - w.started_at
        busy = w.busy_s + (now - w.slice[2] if w.slice is not None else 0.0)
        gpu_s += life
        idle_s += max(0.0, life - boot - busy)
        if w.capacity is Capacity.ON_DEMAND:
            od_s += life
            cost += life / 3600 * prices.on_demand_per_h
        else:
            cost += life / 3600 * prices.spot_per_h
    by_id = {j.batch.id: j for j in jobs}
    batches, latencies = [], []
    for b in trace.batches:
        job = by_id.get(b.id)
        makespan = None if job is None or job.done_at is None else job.done_at - b.at
        batches.append(BatchResult(
            b.id, b.at, b.items, b.deadline_s, makespan,
            makespan is not None and makespan <= b.deadline_s + 1e-6,
            sum(n for _, n in job.latencies) if job is not None else 0))
        if job is not None:
            latencies += job.latencies
            if job.remaining:  # unfinished: at least this late
                latencies.append((now - b.at, job.remaining))
    return SimResult(
        policy=policy, trace=trace.name, seed=seed, gpu_hours=gpu_s / 3600, cost=cost,
        idle_gpu_hours=idle_s / 3600, p95_latency_s=percentile(latencies, 0.95),
        deadlines_met=sum(b.met for b in batches), deadlines_total=len(batches),
        batches=tuple(batches), workers_started=started, interruptions=interruptions,
        on_demand_hours=od_s / 3600, timeline=tuple(timeline))


def percentile(weighted: list[tuple[float, int]], q: float) -> float:
    """The q-quantile of values given as (value, count) pairs."""
    total = sum(n for _, n in weighted)
    if not total:
        return 0.0
    rank, seen = q * total, 0
    for value, n in sorted(weighted):
        seen += n
        if seen >= rank:
            return value
    return max(v for v, _ in weighted)
