"""A discrete-event simulation (SimPy) of a fleet, its queue and an autoscaler.

The autoscaler is the real code (``policy.decide`` for gpufleet, the models
in ``baselines`` for the others), called every ``interval_s`` with a
``FleetView`` of the simulated world; its ``Decision`` is applied to a
simulated provider. What the world does:

- Batches land on one FIFO queue (``traces``); a job's backlog is its items
  queued plus in flight.
- A started worker boots for ``bootstrap_s`` * a log-normal jitter (mean 1,
  ``bootstrap_jitter`` coefficient of variation), then takes work. Millions
  of items never become millions of events: a worker takes a slice of the
  head job (at most ``slice_s`` of work, at least a task of ``chunk_items``,
  and a fair share of what is queued, so the tail stays balanced) and serves
  it in ``items * item_s`` * a log-normal jitter.
- Spot workers are interrupted at ``interruptions_per_h`` per worker-hour:
  on the notice (2 minutes) a worker stops receiving, keeps the items of its
  slice that it has done and releases the rest to the head of the queue, and
  leaves; spot then counts as unavailable for ``spot_retry_s``. A drained
  worker does the same; a booting or idle one just leaves.
- The autoscaler decides every ``interval_s``; an event-driven one (gpufleet:
  its inbox is an event stream) also decides as soon as a batch lands.
- Item latency is batch arrival to completion of the slice holding the item.
- Workers are billed from start to exit at the price of their capacity.
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import simpy

from gpufleet.autoscale.policy import (
    ON_DEMAND_PRICE_PER_H,
    SPOT_PRICE_PER_H,
    FleetView,
    JobBacklog,
    WorkerView,
)
from gpufleet.domain import Capacity, WorkerState
from gpufleet.simulator.baselines import Autoscaler
from gpufleet.simulator.simrecords import (
    BatchResult,
    JobRecord,
    Prices,
    SimResult,
    WorkerRecord,
    account,
)
from gpufleet.simulator.traces import Trace

__all__ = ["BatchResult", "SimConfig", "SimResult", "simulate"]


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    item_s: float = 0.010
    bootstrap_s: float = 300.0
    service_jitter: float = 0.10  # coefficient of variation of a slice's service time
    bootstrap_jitter: float = 0.10  # coefficient of variation of a worker's bootstrap
    interruptions_per_h: float = 0.02  # spot interruptions per spot worker-hour
    spot_refusal: float = 0.0  # probability that a spot request is refused
    spot_retry_s: float = 900.0  # spot unavailable this long after a refusal or interruption
    slice_s: float = 30.0
    chunk_items: int = 32
    spot_price_per_h: float = SPOT_PRICE_PER_H
    on_demand_price_per_h: float = ON_DEMAND_PRICE_PER_H
    seed: int = 0


def _lognormal(rng: random.Random, cv: float) -> float:
    if cv <= 0:
        return 1.0
    sigma = math.sqrt(math.log(1 + cv * cv))
    return rng.lognormvariate(-sigma * sigma / 2, sigma)


class _World:
    def __init__(self, trace: Trace, scaler: Autoscaler, cfg: SimConfig) -> None:
        self.trace, self.scaler, self.cfg = trace, scaler, cfg
        self.env = simpy.Environment()
        self.jobs: list[JobRecord] = []
        self.workers: dict[str, WorkerRecord] = {}
        self.wakeup = self.env.event()
        self.arrived = self.env.event()
        self.spot_unavailable_until = -math.inf
        self.interruptions = 0
        self.timeline: list[tuple[float, int, int]] = []
        self._rng = {k: random.Random(f"{k}-{cfg.seed}") for k in ("boot", "serve", "spot")}
        for _ in range(scaler.warm_workers):
            self.start(Capacity.SPOT, warm=True)
        self.env.process(self._arrivals())
        self.env.process(self._control())

    # The provider.
    def start(self, capacity: Capacity, *, warm: bool = False) -> None:
        if capacity is Capacity.SPOT and not warm and self._rng["spot"].random() < \
                self.cfg.spot_refusal:
            self.spot_unavailable_until = self.env.now + self.cfg.spot_retry_s
            return
        w = WorkerRecord(f"w{len(self.workers) + 1}", capacity, self.env.now)
        self.workers[w.id] = w
        boot = 0.0 if warm else self.cfg.bootstrap_s * _lognormal(self._rng["boot"],
                                                                  self.cfg.bootstrap_jitter)
        w.proc = self.env.process(self._work(w, boot))
        if capacity is Capacity.SPOT and self.cfg.interruptions_per_h > 0:
            at = self._rng["spot"].expovariate(self.cfg.interruptions_per_h / 3600.0)
            self.env.process(self._interrupt(w, at))

    def drain(self, worker_id: str) -> None:
        w = self.workers.get(worker_id)
        if w and w.ended_at is None and w.proc is not None and w.proc.is_alive:
            w.state = WorkerState.DRAINING
            w.proc.interrupt("drain")

    def _interrupt(self, w: WorkerRecord, after_s: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(after_s)
        if w.ended_at is None and w.proc is not None and w.proc.is_alive:
            self.interruptions += 1
            self.spot_unavailable_until = self.env.now + self.cfg.spot_retry_s
            self.drain(w.id)

    # The queue.
    def _take(self) -> tuple[JobRecord, int] | None:
        head = next((j for j in self.jobs if j.queued > 0), None)
        if head is None:
            return None
        queued = sum(j.queued for j in self.jobs)
        working = sum(1 for w in self.workers.values()
                      if w.state in (WorkerState.READY, WorkerState.BUSY))
        share = math.ceil(queued / max(working, 1))
        n = min(head.queued, max(self.cfg.chunk_items,
                                 min(share, int(self.cfg.slice_s / self.cfg.item_s))))
        head.queued -= n
        return head, n

    def _finish(self, job: JobRecord, done: int, released: int) -> None:
        if done:
            job.latencies.append((self.env.now - job.batch.at, done))
            job.remaining -= done
            if job.remaining == 0:
                job.done_at = self.env.now
        if released:
            job.queued += released
            self._wake()

    def _wake(self) -> None:
        event, self.wakeup = self.wakeup, self.env.event()
        event.succeed()

    def _work(self, w: WorkerRecord, boot: float) -> Generator[simpy.Event, Any, None]:
        env = self.env
        try:
            yield env.timeout(boot)
            w.state, w.idle_since, w.ready_at = WorkerState.READY, env.now, env.now
            while True:
                taken = self._take()
                if taken is None:
                    yield self.wakeup
                    continue
                job, n = taken
                duration = n * self.cfg.item_s * _lognormal(self._rng["serve"],
                                                            self.cfg.service_jitter)
                w.state, w.slice = WorkerState.BUSY, (job, n, env.now, duration)
                yield env.timeout(duration)
                w.busy_s += duration
                w.slice = None
                self._finish(job, n, 0)
                w.state, w.idle_since = WorkerState.READY, env.now
        except simpy.Interrupt:
            if w.slice is not None:
                job, n, began, duration = w.slice
                done = min(n, math.floor(n * (env.now - began) / duration))
                w.busy_s += env.now - began
                w.slice = None
                self._finish(job, done, n - done)
            w.ended_at = env.now

    # Arrivals and the controller.
    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        for b in sorted(self.trace.batches, key=lambda b: b.at):
            yield self.env.timeout(max(0.0, b.at - self.env.now))
            self.jobs.append(JobRecord(b, b.items, b.items))
            self._wake()
            if not self.arrived.triggered:
                self.arrived.succeed()

    def view(self) -> FleetView:
        now = self.env.now
        jobs = tuple(JobBacklog(id=j.batch.id, items=j.remaining, created_at=j.batch.at,
                                deadline=j.batch.at + j.batch.deadline_s)
                     for j in self.jobs if j.remaining > 0)
        workers = tuple(WorkerView(id=w.id, state=w.state, capacity=w.capacity,
                                   started_at=w.started_at, idle_since=w.idle_since)
                        for w in self.workers.values() if w.ended_at is None)
        return FleetView(jobs=jobs, workers=workers, item_s=self.cfg.item_s,
                         bootstrap_s=self.cfg.bootstrap_s,
                         spot_available=now >= self.spot_unavailable_until)

    def _control(self) -> Generator[simpy.Event, Any, None]:
        while True:
            view = self.view()
            decision = self.scaler.decide(view, self.env.now)
            for capacity in decision.start:
                self.start(capacity)
            for worker_id in decision.drain:
                self.drain(worker_id)
            alive = sum(1 for w in self.workers.values() if w.ended_at is None)
            self.timeline.append((self.env.now, alive, view.backlog))
            tick = self.env.timeout(self.scaler.interval_s)
            if self.scaler.event_driven:  # a landing manifest wakes the controller at once
                self.arrived = self.env.event()
                yield tick | self.arrived
            else:
                yield tick


def simulate(trace: Trace, scaler: Autoscaler, cfg: SimConfig | None = None) -> SimResult:
    """Run ``scaler`` over ``trace``: until the trace's end, and on until every batch is done."""
    cfg = cfg or SimConfig()
    world = _World(trace, scaler, cfg)
    world.env.run(until=trace.duration_s)
    limit = trace.duration_s + 12 * 3600.0
    while world.env.now < limit and (len(world.jobs) < len(trace.batches)
                                     or any(j.done_at is None for j in world.jobs)):
        world.env.run(until=world.env.now + 600.0)
    return account(scaler.name, trace, cfg.seed,
                   Prices(cfg.spot_price_per_h, cfg.on_demand_price_per_h), world.env.now,
                   world.workers.values(), world.jobs, world.interruptions, world.timeline)
