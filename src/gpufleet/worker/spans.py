"""The worker's part of a job's trace: a span per task, and per piece and batch inside it.

A ``task`` span lasts from a task's entry into the pipeline to its end (acked,
retried, released, lost); its parent is the span that enqueued it, named by the
traceparent in its message, so it joins the submitter's trace. ``fetch`` and
``decode`` run over a piece of one task: children of its span. ``infer`` and
``write`` run over a batch holding items of several tasks: each is a child of the
first task's span and links to the others' (OpenTelemetry's pattern for batch
processing). Items that fail are events on the write span that records them.

Spans are made from the observer's hooks, after the fact, with the times the
pipeline measured: the pipeline itself knows nothing of tracing. Hooks come from
several threads; the open task spans are kept under a lock and let go at each
task's end, so nothing outlives its task.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from gpufleet import tracing
from gpufleet.domain import ItemStatus
from gpufleet.worker.delivery import deliveries
from gpufleet.worker.observer import Observer, Stage, TaskEnd

if TYPE_CHECKING:
    from gpufleet.worker.ledger import Run
    from gpufleet.worker.writer import Outcome

MAX_EVENTS = 32  # failed items told per write span; the count says how many there were


def span_observers(worker_id: str) -> list[Observer]:
    """The worker's span observer when spans go somewhere; none (no cost) when they don't."""
    return [SpanObserver(tracing.tracer(), worker_id=worker_id)] if tracing.enabled() else []


class _OpenTask:
    __slots__ = ("failed", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.failed = 0


class SpanObserver(Observer):
    def __init__(self, tracer: Tracer, *, worker_id: str | None = None) -> None:
        self.tracer = tracer
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._tasks: dict[Run, _OpenTask] = {}
        self._local = threading.local()  # per thread: the last batch's capacity, the open write

    def task_started(self, run: Run) -> None:
        attributes: dict[str, str | int] = {
            "gpufleet.job.id": run.task.job, "gpufleet.items": len(run.keys),
            "gpufleet.task.deliveries": deliveries(run.task, run.lease)}
        if self.worker_id:
            attributes["gpufleet.worker.id"] = self.worker_id
        # No traceparent (or a bad one): a trace of its own, never the caller's context.
        parent = tracing.parent_context(run.task.trace) or Context()
        span = self.tracer.start_span("task", context=parent, kind=SpanKind.CONSUMER,
                                      attributes=attributes)
        with self._lock:
            self._tasks[run] = _OpenTask(span)

    def batch(self, size: int, capacity: int) -> None:
        self._local.capacity = capacity  # told just before the infer stage, on its thread

    def stage(self, stage: Stage, runs: Sequence[Run], items: int, started: float,
              seconds: float) -> None:
        with self._lock:
            open_spans = [self._tasks[r].span for r in runs if r in self._tasks]
        if not open_spans:
            return  # its tasks ended already (lost, released): nothing to hang it on
        parent, *others = open_spans
        start_ns = int(started * 1e9)
        attributes = {"gpufleet.items": items, "gpufleet.tasks": len(open_spans)}
        if stage is Stage.INFER:
            attributes["gpufleet.batch.capacity"] = getattr(self._local, "capacity", 0)
        span = self.tracer.start_span(
            stage.value, context=trace.set_span_in_context(parent),
            links=[Link(s.get_span_context()) for s in others], start_time=start_ns,
            attributes=attributes)
        end_ns = start_ns + int(seconds * 1e9)
        if stage is Stage.WRITE:  # kept open for the outcomes, told next (written)
            self._end_write()
            self._local.write = (span, end_ns)
        else:
            span.end(end_time=end_ns)

    def written(self, outcomes: Sequence[Outcome]) -> None:
        retried = [o for o in outcomes if o.transient is not None or o.result is None]
        failed = [o for o in outcomes if o.transient is None and o.result is not None
                  and o.result.status is ItemStatus.FAILED]
        pending = getattr(self._local, "write", None)
        if pending is not None:
            span, end_ns = pending
            span.set_attribute("gpufleet.items.failed", len(failed))
            span.set_attribute("gpufleet.items.retried", len(retried))
            told = [("item failed", o.key, o.result.error if o.result else None)
                    for o in failed] + [("item retried", o.key, o.transient) for o in retried]
            for name, key, error in told[:MAX_EVENTS]:
                span.add_event(name, {"gpufleet.item.key": key,
                                      "gpufleet.item.error": error or "unknown"},
                               timestamp=end_ns)
            self._end_write()
        if failed:
            with self._lock:
                for o in failed:
                    if (task := self._tasks.get(o.run)) is not None:
                        task.failed += 1

    def _end_write(self) -> None:
        pending = getattr(self._local, "write", None)
        if pending is not None:
            span, end_ns = pending
            span.end(end_time=end_ns)
            self._local.write = None

    def task_ended(self, run: Run, end: TaskEnd) -> None:
        with self._lock:
            task = self._tasks.pop(run, None)
        if task is None:
            return  # told twice (lost, then counted out): the first end stands
        span = task.span
        span.set_attribute("gpufleet.task.end", end.value)
        span.set_attribute("gpufleet.items.failed", task.failed)
        if end is TaskEnd.RETRIED:
            span.set_status(Status(StatusCode.ERROR, run.error or "retried"))
        elif end is TaskEnd.LOST:
            span.set_status(Status(StatusCode.ERROR, "lease lost: another worker has it now"))
        span.end()
