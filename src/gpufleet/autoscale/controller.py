"""The controller: every few seconds, look at the backlog and the fleet, decide, act.

One tick:

1. take what landed in the inbox (new jobs), and sweep: finish interrupted submissions,
   repair or fail jobs whose items have no task left (``sweeper``);
2. read the backlog per job (items queued or in flight: the index's pending
   items, checked against the queue's depth), the service time per item per
   worker (busy seconds per item the workers reported; until there is data,
   the model's own ``item_ms`` or ``--item-ms``), the bootstrap time (the
   median the workers reported, plus the provider's launch overhead; until
   then the model's ``bootstrap_s`` or ``--bootstrap``) and the fleet (the
   provider's machines joined with the workers' own rows: booting, ready, busy,
   draining);
3. ask ``policy.decide`` (the same function the simulator runs);
4. tell the provider: launch, drain, protect the busy; log the decision with
   its reasons when it changes, and record it in the index for ``gpufleet fleet``.

It keeps nothing in memory that the next tick needs: killed and started
again, it reads the same index and the same provider and converges on the
same fleet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpufleet.autoscale.machines import machine_row
from gpufleet.autoscale.policy import (
    Decision,
    FleetView,
    JobBacklog,
    PolicyConfig,
    WorkerView,
    decide,
)
from gpufleet.autoscale.providers.base import Machine, Provider
from gpufleet.config import Settings
from gpufleet.domain import Capacity, WorkerGone, WorkerState
from gpufleet.errors import GpufleetError, Unavailable
from gpufleet.index import Index
from gpufleet.index.fleet_records import FleetRecords
from gpufleet.intake.ingest import Ingest
from gpufleet.models import parse_spec
from gpufleet.notify.dispatcher import Background, Dispatcher
from gpufleet.queue import open_queue
from gpufleet.sweeper import sweep

log = logging.getLogger(__name__)
SPOT_BACKOFF_S = 600.0  # after a spot reclaim, start on-demand for this long
_LOG_EVERY_S = 30.0  # a decision that does not change is logged this often


@dataclass(frozen=True, kw_only=True)
class Estimates:
    """Service and bootstrap times to assume until the workers have measured them."""

    item_s: float = 0.010  # per item on one GPU
    bootstrap_s: float = 300.0
    gpus: int = 1  # GPUs per machine, each with its worker (`gpufleet worker --gpus all`)

    @classmethod
    def for_model(cls, spec: str, *, item_s: float | None = None,
                  bootstrap_s: float | None = None, gpus: int = 1) -> Estimates:
        _, params = parse_spec(spec)
        try:
            model_item_s = float(params["item_ms"]) / 1000 if "item_ms" in params else None
            model_boot_s = float(params["bootstrap_s"]) if "bootstrap_s" in params else None
        except ValueError:
            model_item_s = model_boot_s = None
        return cls(item_s=item_s or model_item_s or cls.item_s,
                   bootstrap_s=bootstrap_s if bootstrap_s is not None
                   else model_boot_s if model_boot_s is not None else cls.bootstrap_s,
                   gpus=gpus)


class Controller:
    def __init__(self, settings: Settings, index: Index, provider: Provider, *, model: str,
                 config: PolicyConfig, estimates: Estimates, ingest: Ingest | None = None,
                 clock: Callable[[], float] = time.time,
                 on_tick: Callable[[Decision, FleetView, float], object] | None = None) -> None:
        """on_tick: told each tick's decision and what it was decided on (metrics)."""
        self.settings, self.index, self.provider, self.model = settings, index, provider, model
        self.config, self.estimates, self.ingest, self.clock = config, estimates, ingest, clock
        self.on_tick = on_tick
        self.records = FleetRecords(index)
        self.queue = open_queue(settings.queue, name=model)
        # Notifications are delivered beside the tick, never in its way (notify/dispatcher.py).
        self.notifications = Background(Dispatcher(settings, index))
        self._last_acted: tuple[Any, ...] = ()  # only to log changes, not to decide
        self._logged_at = 0.0

    def run(self, *, interval_s: float = 2.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        log.info("controller: model %s, provider %s, workers %d..%d, cool-down %.0f s",
                 self.model, self.provider.name, self.config.min_workers,
                 self.config.max_workers, self.config.cooldown_s)
        while not stop.is_set():
            try:
                self.tick()
            except Unavailable as exc:
                log.warning("tick skipped, trying again: %s", exc)
            stop.wait(interval_s)

    def tick(self) -> Decision:
        if self.ingest is not None:
            self.ingest.poll()
        sweep(self.settings, self.index, model=self.model)  # every job ends, whatever happened
        self.notifications.kick()
        now = self.clock()
        machines = self.provider.machines()
        view, snapshot = self.view(machines, now)
        decision = decide(view, self.config, now)
        self._act(decision, view)
        self._record(decision, view, snapshot, now)
        if self.on_tick is not None:
            self.on_tick(decision, view, now)
        return decision

    # Seeing ------------------------------------------------------------------

    def view(self, machines: list[Machine], now: float) -> tuple[FleetView, list[dict[str, Any]]]:
        rows = {instance: machine_row(pipelines, now=now) for instance, pipelines in
                self.records.workers(self.model, instances=[m.id for m in machines]).items()}
        workers, snapshot = [], []
        model_boot_s, bootstrap_s = self._bootstrap_s(machines, rows)
        for m in machines:
            row = rows.get(m.id)
            state = WorkerState.DRAINING if m.draining else (
                _planned_state(row["state"]) if row and not m.pending else WorkerState.BOOTING)
            remaining = None
            if state is WorkerState.BOOTING and row is not None:
                # Up and loading its model: what is left of the model's bootstrap.
                remaining = max(0.0, model_boot_s - (now - row["started_at"]))
            idle_since = row.get("state_since") if row and state is WorkerState.READY else None
            capacity = Capacity(row["capacity"]) if row and row.get("capacity") in (
                set(Capacity)) else m.capacity
            workers.append(WorkerView(id=m.id, state=state, capacity=capacity,
                                      started_at=m.launched_at, boot_remaining_s=remaining,
                                      idle_since=idle_since))
            snapshot.append({"id": m.id, "state": state.value, "capacity": capacity.value,
                             "launched_at": m.launched_at,
                             "worker": row["id"] if row else None,
                             **({k: row.get(k) for k in ("pipelines", "gpu_util_pct",
                                                         "gpu_memory_mb")} if row else {})})
        spot_ok = not self.provider.spot_refused() and not self.records.interruptions(
            self.model, since=now - SPOT_BACKOFF_S)
        view = FleetView(jobs=tuple(self._backlog()), workers=tuple(workers),
                         item_s=self._item_s(), bootstrap_s=bootstrap_s, spot_available=spot_ok)
        return view, snapshot

    def _backlog(self) -> list[JobBacklog]:
        jobs = self.records.open_jobs(self.model)
        depth = self.queue.depth()
        tasks = depth.queued + depth.in_flight
        if jobs and not tasks:
            # The index says work is left but the queue holds none: nothing a worker can do.
            log.debug("%d job(s) have pending items but the queue is empty", len(jobs))
            return []
        backlog = [JobBacklog(id=j.id, items=j.pending, created_at=j.created_at,
                              deadline=None if j.deadline_s is None
                              else j.created_at + j.deadline_s, priority=j.priority)
                   for j in jobs]
        if tasks and not jobs:  # e.g. redriven dead letters whose items were marked failed
            backlog.append(JobBacklog(id="(queue)", items=tasks * self.settings.tasks.chunk_size,
                                      created_at=self.clock()))
        return backlog

    def _item_s(self) -> float:
        """Per item per machine: one GPU's measured time shared by the machine's GPUs."""
        per_gpu = self.records.service_time_s(self.model) or self.estimates.item_s
        return per_gpu / (self.records.gpus_per_machine(self.model) or self.estimates.gpus)

    def _bootstrap_s(self, machines: list[Machine], rows: dict[str, dict[str, Any]]
                     ) -> tuple[float, float]:
        """The model's bootstrap, and launch to ready: that plus the launch overhead seen."""
        model_boot_s = self.records.bootstrap_s(self.model)
        if model_boot_s is None:
            model_boot_s = self.estimates.bootstrap_s
        overheads = sorted(row["started_at"] - m.launched_at for m in machines
                           if (row := rows.get(m.id)) and row["started_at"] >= m.launched_at)
        overhead = overheads[len(overheads) // 2] if overheads else \
            self.provider.launch_overhead_s
        return model_boot_s, model_boot_s + overhead

    # Acting ------------------------------------------------------------------

    def _act(self, decision: Decision, view: FleetView) -> None:
        try:
            if decision.drain:
                self.provider.drain(decision.drain)
            for capacity, count in Counter(decision.start).items():
                self.provider.launch(count, capacity)
            busy = [w.id for w in view.workers
                    if w.state is WorkerState.BUSY and w.id not in decision.drain]
            self.provider.protect(busy)
        except GpufleetError as exc:
            log.error("provider %s: %s", self.provider.name, exc)

    def _record(self, decision: Decision, view: FleetView, snapshot: list[dict[str, Any]],
                now: float) -> None:
        acted = (decision.desired, decision.start, decision.drain, decision.late)
        if acted != self._last_acted or now - self._logged_at >= _LOG_EVERY_S:
            self._last_acted, self._logged_at = acted, now
            log.info("desired %d (backlog %d item(s) in %d job(s)): %s", decision.desired,
                     view.backlog, len(view.jobs), "; ".join(decision.reasons))
        doc = {**decision.to_dict(), "provider": self.provider.name, "workers": snapshot,
               "backlog": view.backlog, "jobs": len(view.jobs),
               "measured": {"item_s": view.item_s, "bootstrap_s": view.bootstrap_s,
                            "spot_available": view.spot_available}}
        try:
            self.records.record_decision(self.model, decision.desired, doc)
        except Unavailable as exc:
            log.warning("cannot record the decision: %s", exc)

    def close(self) -> None:
        self.notifications.close()
        self.queue.close()
        if self.ingest is not None:
            self.ingest.inbox.close()


def _planned_state(reported: str) -> WorkerState:
    """The state the policy plans with, from what a worker wrote in its row."""
    if reported in set(WorkerGone):
        return WorkerState.DRAINING
    try:
        return WorkerState(reported)
    except ValueError:  # a newer worker's state: plan as if it were still starting
        return WorkerState.BOOTING
