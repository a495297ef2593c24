"""Notification dispatch throughput: events noticed and webhooks delivered per second.

A local receiver (http.server, threaded, keep-alive) answers 200 after a set
latency, as a receiver across a network would. Each of T tenant-wide webhooks
hears of J finished jobs: 2 J T events (created, finished). Measured in the same
run, on fresh indexes: noticing (writing the outbox), then delivering with
(a) one delivery at a time, (b) GPUFLEET_NOTIFY_CONCURRENCY targets at once, and
(c) one at a time with a new HTTP client per event (what keeping one avoids).

    python benchmarks/notify_dispatch.py --jobs 50 --targets 8 --latency-ms 20
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gpufleet.config import Settings
from gpufleet.domain import ItemResult, ItemStatus
from gpufleet.index import Index
from gpufleet.index.outbox import Outbox
from gpufleet.notify import webhook
from gpufleet.notify.dispatcher import Dispatcher
from gpufleet.notify.events import notice
from gpufleet.notify.targets import TargetStore


def _receiver(latency_s: float) -> ThreadingHTTPServer:
    class Ok(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(latency_s)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _world(home: Path, *, jobs: int, targets: int, url: str) -> tuple[Settings, Index]:
    settings = Settings.from_env({"GPUFLEET_HOME": str(home), "GPUFLEET_NOTIFY_ALLOW_HTTP": "1",
                                  "GPUFLEET_NOTIFY_ALLOW_PRIVATE": "1",
                                  "GPUFLEET_NOTIFY_BATCH": "1000"})
    index = Index(settings.db)
    for n in range(targets):
        TargetStore(index, settings.notify).add(f"{url}/{n}", tenant="t")
    for n in range(jobs):
        job = f"job-{n:05d}"
        index.create_job(job, model="m", input="file:///i/", output="file:///o/",
                         keys=["k0", "k1"], tenant="t")
        index.record([ItemResult(job=job, key=k, status=ItemStatus.DONE) for k in ("k0", "k1")])
    return settings, index


class _FreshClient:
    """Posts each event with a client of its own: a new TLS context and connection."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    @contextmanager
    def stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with webhook.new_client(self.timeout_s) as http, http.stream(*args, **kwargs) as answer:
            yield answer

    def close(self) -> None:
        pass


def _run(tmp: Path, mode: str, *, concurrency: int, fresh: bool, url: str, jobs: int,
         targets: int) -> float:
    settings, index = _world(tmp / mode.replace(" ", "-"), jobs=jobs, targets=targets, url=url)
    settings = dataclasses.replace(settings, notify=dataclasses.replace(
        settings.notify, concurrency=concurrency))
    started = time.perf_counter()
    events = notice(index, Outbox(index), list(TargetStore(index, settings.notify)
                                                .signing().values()))
    notice_s = time.perf_counter() - started
    http = _FreshClient(settings.notify.timeout_s) if fresh else None
    with Dispatcher(settings, index, http=http) as dispatcher:
        started = time.perf_counter()
        done = dispatcher.drain(budget_s=600)
        send_s = time.perf_counter() - started
    index.close()
    assert done.delivered == events, done
    rate = events / send_s
    print(f"{mode:>26}: {events} events noticed in {notice_s:.2f} s ({events / notice_s:,.0f}/s), "
          f"delivered in {send_s:.2f} s ({rate:,.0f}/s)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    server = _receiver(args.latency_ms / 1000)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    common = {"url": url, "jobs": args.jobs, "targets": args.targets}
    print(f"{args.targets} webhooks x {args.jobs} jobs, receiver latency {args.latency_ms:g} ms")
    with tempfile.TemporaryDirectory() as tmp:
        one = _run(Path(tmp), "one at a time", concurrency=1, fresh=False, **common)
        many = _run(Path(tmp), f"{args.concurrency} targets at once",
                    concurrency=args.concurrency, fresh=False, **common)
        fresh = _run(Path(tmp), "one at a time, new client", concurrency=1, fresh=True,
                     **common)
    server.shutdown()
    print(f"concurrent / one at a time: {many / one:.2f}x; kept client / new client per "
          f"event: {one / fresh:.2f}x")


if __name__ == "__main__":
    main()
