"""Traces: one trace from a job's submission to each item's write, carried in task messages.

Spans go to the SDK's in-memory exporter through a provider given to gpufleet for
the test (``tracing.use``), never the process-wide one, so other tests stay untraced.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gpufleet import tracing
from gpufleet.domain import Task
from gpufleet.queue import Lease, open_queue
from gpufleet.worker import delivery
from gpufleet.worker.spans import span_observers
from tests.conftest import Home
from tests.pipeline_jobs import MODEL, observed_pipeline, submit_files

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)
    provider.shutdown()


def _submit(home: Home, *, items: int, missing: int = 0) -> tuple[str, list[str]]:
    return submit_files(home, items=items, missing=missing)


def _work(home: Home) -> None:
    """A real pipeline, observed as a worker observes it, until the queue is empty."""
    pipeline = observed_pipeline(home, span_observers("w-test")[0])
    pipeline.run(stop=threading.Event(), max_idle_s=0.5)


def _by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _messages(home: Home) -> list[dict[str, object]]:
    queue = open_queue(home.settings.queue, name=MODEL)
    leases = queue.receive(100, visibility_timeout_s=30, wait_s=0)
    for lease in leases:
        queue.release(lease, delay_s=0)
    queue.close()
    return [json.loads(lease.body) for lease in leases]


def test_a_job_is_one_trace_from_submission_to_every_write(
        home: Home, spans: InMemorySpanExporter) -> None:
    # Given a job of 37 objects and 3 missing ones, cut into tasks of 10
    home.env["GPUFLEET_CHUNK_SIZE"] = "10"
    job, keys = _submit(home, items=37, missing=3)
    # When a traced worker runs it
    _work(home)
    found = _by_name(spans)
    [submit], [enqueue] = found["submit"], found["enqueue"]
    tasks = found["task"]
    # Then every span is in the submission's trace
    assert submit.context is not None
    assert {s.context.trace_id for s in spans.get_finished_spans() if s.context} == {
        submit.context.trace_id}
    assert submit.attributes is not None and enqueue.attributes is not None
    assert (submit.attributes["gpufleet.job.id"], submit.attributes["gpufleet.model"],
            submit.attributes["gpufleet.tenant"], submit.attributes["gpufleet.items"]) == (
        job, MODEL, "default", 40)
    assert _parent(enqueue) == _id(submit) and enqueue.attributes["gpufleet.tasks"] == 4
    # And each task's span hangs from the enqueue span, across the queue
    assert len(tasks) == 4
    assert all(_parent(t) == _id(enqueue) and t.parent and t.parent.is_remote for t in tasks)
    assert Counter(t.attributes["gpufleet.task.end"] for t in tasks if t.attributes) == {
        "acked": 4}
    assert sum(t.attributes["gpufleet.items.failed"] for t in tasks if t.attributes) == 3
    task_ids = {_id(t) for t in tasks}
    # And fetch and decode are children of a task's span, over every item
    for name, items in (("fetch", 40), ("decode", 37)):
        assert all(_parent(s) in task_ids for s in found[name])
        assert sum(s.attributes["gpufleet.items"] for s in found[name] if s.attributes) == items
    # And each batch span is a child of one task's span, linked to its other tasks'
    for name, items in (("infer", 37), ("write", 40)):
        touched: set[int] = set()
        for s in found[name]:
            linked = {link.context.span_id for link in s.links}
            assert _parent(s) in task_ids and linked <= task_ids - {_parent(s)}
            assert s.attributes and s.attributes["gpufleet.tasks"] == 1 + len(linked)
            touched |= linked | {_parent(s)}  # type: ignore[arg-type]
        assert touched == task_ids
        assert sum(s.attributes["gpufleet.items"] for s in found[name] if s.attributes) == items
    assert all(s.attributes and 1 <= s.attributes["gpufleet.items"]
               <= s.attributes["gpufleet.batch.capacity"] == 4 for s in found["infer"])
    # And the items that failed are events on the write spans that recorded them
    events = [e for s in found["write"] for e in s.events]
    assert sorted(e.attributes["gpufleet.item.key"] for e in events if e.attributes) == keys[37:]
    assert all(e.name == "item failed" and e.attributes and e.attributes["gpufleet.item.error"]
               for e in events)


def test_untraced_a_task_message_has_no_trace(home: Home) -> None:
    # Given no tracer provider (the default: nothing configured)
    assert not tracing.enabled() and span_observers("w") == []
    # When a job is submitted
    _submit(home, items=3)
    # Then its messages are what they were before traces existed
    [message] = _messages(home)
    assert "trace" not in message
    task = Task.decode(json.dumps(message))
    assert task.trace is None and json.loads(task.encode()) == message


def test_a_traced_task_message_carries_its_enqueue_span(
        home: Home, spans: InMemorySpanExporter) -> None:
    _submit(home, items=3)
    [enqueue] = _by_name(spans)["enqueue"]
    [message] = _messages(home)
    assert enqueue.context is not None
    version, trace_id, span_id, _flags = str(message["trace"]).split("-")
    assert (version, trace_id, span_id) == (
        "00", f"{enqueue.context.trace_id:032x}", f"{enqueue.context.span_id:016x}")


@pytest.mark.parametrize("trace", ["garbage", 42, None, "00-" + "0" * 32 + "-" + "0" * 16 + "-01",
                                   "00-" + "a" * 600])
def test_a_bad_trace_in_a_message_never_fails_its_task(
        home: Home, spans: InMemorySpanExporter, trace: object) -> None:
    # Given a job whose task message carries an unreadable trace
    job, _ = _submit(home, items=5)
    queue = open_queue(home.settings.queue, name=MODEL)
    [lease] = queue.receive(1, visibility_timeout_s=30, wait_s=0)
    queue.enqueue([json.dumps({**json.loads(lease.body), "trace": trace})])
    queue.ack(lease)
    queue.close()
    spans.clear()
    # When a worker runs it
    _work(home)
    # Then every item is done, in a trace of the task's own
    assert home.index().job(job).counts.done == 5
    [task] = _by_name(spans)["task"]
    assert task.parent is None and task.attributes
    assert task.attributes["gpufleet.task.end"] == "acked"


def test_old_messages_decode_and_a_trace_round_trips() -> None:
    old = '{"job": "j", "keys": ["a"], "input": "file:///in/", "output": "file:///out/"}'
    assert Task.decode(old).trace is None and Task.decode(old).encode() == old
    traced = Task("j", ("a",), "file:///in/", "file:///out/", trace=TRACEPARENT)
    assert Task.decode(traced.encode()) == traced
    assert tracing.parent_context(TRACEPARENT) is not None
    assert tracing.parent_context("00-nonsense") is None


def test_a_split_task_keeps_its_trace() -> None:
    task = Task("j", ("a", "b", "c"), "file:///in/", "file:///out/", trace=TRACEPARENT)
    lease = Lease(id="1", body=task.encode(), receives=3, token="t")
    pieces = delivery.split(task, lease, recorded={"b"})
    assert [p.keys for p in pieces] == [("a",), ("c",)]
    assert {p.trace for p in pieces} == {TRACEPARENT}


@pytest.mark.parametrize("env", [
    {},
    {"OTEL_SERVICE_NAME": "x"},  # a name alone asks for nothing
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "OTEL_SDK_DISABLED": "true"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "OTEL_TRACES_EXPORTER": "none"},
])
def test_configure_exports_nothing_unless_the_environment_asks(env: dict[str, str]) -> None:
    assert tracing.configure("worker", environ=env) is False
    assert not tracing.enabled()


def test_asked_to_export_without_the_sdk_it_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Given an environment without the SDK (its modules cannot be imported)
    for name in [m for m in sys.modules if m.startswith("opentelemetry.sdk")]:
        monkeypatch.setitem(sys.modules, name, None)
    # When a process is asked to export
    with caplog.at_level(logging.WARNING):
        configured = tracing.configure(
            "worker", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"})
    # Then it runs untraced and says, in one line, how to trace
    assert configured is False and not tracing.enabled()
    [record] = caplog.records
    assert "pip install 'gpufleet[otel]'" in record.getMessage()
