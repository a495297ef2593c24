"""Traces across processes: a submit and a worker, exporting over OTLP/HTTP to a receiver.

The receiver is a real OTLP/HTTP endpoint in the test (POST /v1/traces, protobuf
bodies decoded with opentelemetry-proto), so what is checked is what a collector,
Jaeger or Tempo would get.
"""

from __future__ import annotations

import gzip
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.conftest import Home, write_files

MODEL = "synthetic?batch_size=4&item_ms=1"


@dataclass(frozen=True)
class Received:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent: str


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Received] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource_spans in request.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes
                           if a.key == "service.name")
            found += [Received(service, s.name, s.trace_id.hex(), s.span_id.hex(),
                               s.parent_span_id.hex())
                      for scope in resource_spans.scope_spans for s in scope.spans]
        with self.server.lock:
            self.server.spans += found
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the test says what went wrong


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_workers_spans_join_the_trace_of_the_submit_that_made_its_tasks(
        home: Home, tmp_path: Path, receiver: Receiver) -> None:
    # Given processes told by the standard variables to export to an OTLP endpoint, with a
    # batch delay far longer than the test: spans arrive only if each process flushes as
    # it exits (a worker draining on SIGTERM included)
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "600000", "GPUFLEET_CHUNK_SIZE": "10"}
    keys = write_files(tmp_path / "in", 30)
    manifest = tmp_path / "manifest.txt"
    manifest.write_text("\n".join([*keys, "missing.bin"]) + "\n")
    # When a job is submitted, a worker runs it and is stopped with SIGTERM
    job = home.run("submit", manifest, "--input", (tmp_path / "in").as_uri() + "/",
                   "--model", MODEL, **otel).stdout.strip()
    worker = home.spawn("worker", "--model", MODEL, **otel)
    home.wait_for(lambda: home.index().job(job).state.finished, what="the job to end")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, home.logs()
    # Then the submit's spans and the worker's are one trace, with the tasks under the
    # enqueue span and every stage under the tasks
    spans = receiver.spans
    names = {(s.service, s.name) for s in spans}
    assert names >= {("gpufleet-submit", "submit"), ("gpufleet-submit", "enqueue"),
                     *(("gpufleet-worker", n) for n in
                       ("task", "fetch", "decode", "infer", "write"))}, home.logs()
    [submit] = [s for s in spans if s.name == "submit"]
    [enqueue] = [s for s in spans if s.name == "enqueue"]
    tasks = [s for s in spans if s.name == "task"]
    assert len(tasks) == 4 and {t.parent for t in tasks} == {enqueue.span_id}
    assert enqueue.parent == submit.span_id
    assert {s.trace_id for s in spans} == {submit.trace_id}
    task_ids = {t.span_id for t in tasks}
    assert all(s.parent in task_ids for s in spans if s.service == "gpufleet-worker"
               and s.name != "task")
