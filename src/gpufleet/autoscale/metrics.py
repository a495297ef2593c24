"""The controller's Prometheus metrics: each tick's view and decision, as the policy saw them.

Nothing is recomputed here: the levels (workers, backlog, predicted finishes,
deadlines) are the last tick's ``FleetView`` and ``Decision``, read when
Prometheus scrapes, so a job's series vanish with the first tick after it
ends and the job label stays bounded by the open jobs. Times are seconds from
that tick (at most one interval old; ``..._last_tick_timestamp_seconds`` says
when). Counters count ticks by the reasons of their decision, and the workers
started and drained. The cost is read from the workers' reports in the index
at scrape time.

The queue reports counts, not ages, so the age of the oldest waiting work is
the age of the oldest job with pending items (since its submission).
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpufleet.autoscale.policy import Decision, FleetView, PolicyConfig, due
from gpufleet.domain import Capacity, WorkerState
from gpufleet.errors import GpufleetError
from gpufleet.index.fleet_records import FleetRecords
from gpufleet.models.base import parse_spec

log = logging.getLogger(__name__)

# The kinds of reason policy.decide gives, by how its lines start; first match wins.
REASONS = (
    ("drain booting", "drain_booting"),  # would be ready only after the backlog is gone
    ("drain idle", "drain_idle"),  # idle past the cool-down
    ("drain ", "drain_over_max"),  # above max_workers
    ("start ", "start"),  # refined below: deadlines, best effort, warm pool
    ("cannot start", "cannot_start"),
    ("late:", "late"),
    ("hold ", "hold"),
    ("capacity:", None),  # which capacity, not why: counted in workers_started_total
)


def reason_kind(reason: str) -> str | None:
    """A bounded label for one of the policy's free-text reasons (None: not a reason)."""
    for prefix, kind in REASONS:
        if reason.startswith(prefix):
            if kind == "start":
                return ("start_warm_pool" if "warm pool" in reason else
                        "start_best_effort" if "cannot all be met" in reason else
                        "start_deadlines")
            return kind
    return "other"


class ControllerMetrics(Collector):
    def __init__(self, *, model: str, config: PolicyConfig, records: FleetRecords,
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.model = parse_spec(model)[0]  # its name, not its parameters: bounded labels
        self.spec, self.config, self.records = model, config, records
        self._last: tuple[Decision, FleetView, float] | None = None
        r, m = self.registry, [self.model]
        self._decisions = Counter("gpufleet_controller_decisions", "Controller ticks by the "
                                  "reasons of their decision (a tick with several reasons "
                                  "counts under each)", ["model", "reason"], registry=r)
        self._started = Counter("gpufleet_controller_workers_started", "Workers the controller "
                                "asked the provider to start", ["model", "capacity"], registry=r)
        self._drained = Counter("gpufleet_controller_workers_drained", "Workers the controller "
                                "asked to drain", ["model"], registry=r)
        for c in Capacity:  # every series from the start: increase() needs the zero
            self._started.labels(*m, c.value)
        self._drained.labels(*m)
        r.register(self)

    def __call__(self, decision: Decision, view: FleetView, now: float) -> None:
        """One tick: Controller(on_tick=metrics)."""
        kinds = {reason_kind(reason) for reason in decision.reasons}
        for kind in sorted(k for k in kinds if k is not None):
            self._decisions.labels(self.model, kind).inc()
        for capacity, n in Tally(decision.start).items():
            self._started.labels(self.model, capacity.value).inc(n)
        if decision.drain:
            self._drained.labels(self.model).inc(len(decision.drain))
        self._last = (decision, view, now)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        yield from self._cost()
        if self._last is None:  # before the first tick: nothing seen yet
            return
        decision, view, now = self._last
        m = [self.model]

        def gauge(name: str, doc: str, value: float, *labels: tuple[str, str]) -> Metric:
            family = GaugeMetricFamily(name, doc, labels=["model", *(k for k, _ in labels)])
            family.add_metric([*m, *(v for _, v in labels)], value)
            return family

        yield gauge("gpufleet_controller_last_tick_timestamp_seconds", "When the controller "
                    "last decided (Unix time): every gauge below is as of then", now)
        yield gauge("gpufleet_controller_workers_desired", "Workers the last decision wants "
                    "(not counting draining ones)", decision.desired)
        actual = GaugeMetricFamily("gpufleet_controller_workers", "Workers the provider has, "
                                   "by state (as the policy plans with it) and capacity type",
                                   labels=["model", "state", "capacity"])
        counts = Tally((w.state, w.capacity) for w in view.workers)
        for state in WorkerState:
            for capacity in Capacity:
                actual.add_metric([*m, state.value, capacity.value], counts[state, capacity])
        yield actual
        yield gauge("gpufleet_controller_backlog_items", "Items queued or in flight in the "
                    "model's open jobs", view.backlog)
        created = [j.created_at for j in view.jobs if j.items > 0]
        yield gauge("gpufleet_controller_oldest_job_age_seconds", "Age of the oldest job with "
                    "items pending (the queue reports no ages); 0 without backlog",
                    now - min(created) if created else 0.0)
        yield gauge("gpufleet_controller_item_seconds", "Service time per item per worker the "
                    "policy plans with (measured, else the estimate)", view.item_s)
        yield gauge("gpufleet_controller_bootstrap_seconds", "Launch-to-ready time the policy "
                    "plans with (measured, else the estimate)", view.bootstrap_s)
        if decision.finish_at is not None:
            yield gauge("gpufleet_controller_backlog_finish_seconds", "Seconds until the "
                        "backlog is predicted gone, with the fleet decided on",
                        decision.finish_at - now)
        yield from self._jobs(decision, view, now)

    def _jobs(self, decision: Decision, view: FleetView, now: float) -> Iterable[Metric]:
        labels = ["model", "job"]
        finish = GaugeMetricFamily("gpufleet_controller_job_finish_seconds", "Seconds until "
                                   "an open job is predicted done (earliest deadline first)",
                                   labels=labels)
        deadline = GaugeMetricFamily("gpufleet_controller_job_deadline_seconds", "Seconds "
                                     "until an open job's deadline (none given: created + "
                                     "the target drain time); negative once past",
                                     labels=labels)
        late = GaugeMetricFamily("gpufleet_controller_job_late", "1 if an open job is "
                                 "predicted to miss its deadline even with the fleet decided "
                                 "on, else 0", labels=labels)
        for job, at in decision.job_finish_at:
            finish.add_metric([self.model, job], at - now)
        for j in view.jobs:
            if j.items > 0:
                deadline.add_metric([self.model, j.id], due(j, self.config) - now)
                late.add_metric([self.model, j.id], 1.0 if j.id in decision.late else 0.0)
        yield finish
        yield deadline
        yield late

    def _cost(self) -> Iterable[Metric]:
        try:
            cost = self.records.cost(self.spec)
        except GpufleetError as exc:  # the index is down: no sample rather than a wrong one
            log.warning("metrics: cannot read the fleet's cost: %s", exc)
            return
        family = GaugeMetricFamily("gpufleet_controller_cost_dollars", "What the model's "
                                   "workers have cost so far, every second booting, busy or "
                                   "idle at its price per hour (GPUFLEET_*_PRICE_PER_H)",
                                   labels=["model"])
        family.add_metric([self.model], cost)
        yield family
