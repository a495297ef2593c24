"""Clocks the conformance suite can move for the server backends, and an in-process moto.

- SQLite takes a clock function: time jumps, nothing sleeps.
- Redis keeps time itself (``TIME``, entry idle times), so ``RedisClock`` moves
  the queue's state instead: ``advance(s)`` adds s to the idle time of every
  pending entry (``XCLAIM ... IDLE ... JUSTID``, which is not a delivery) and
  brings every delayed task s closer to due. The backend's own scripts then
  run unchanged: ``XAUTOCLAIM`` reclaims, the delayed set is moved back.
- moto's SQS models read the time through ``unix_time``/``unix_time_millis``;
  ``MotoClock`` runs moto's HTTP server in this process and adds an offset to
  those two functions, so SQS visibility, delays and counts jump with it while
  boto3 still talks HTTP to the server, and other processes see the same time.

Real time keeps flowing under both, a few milliseconds per operation: the
machine's durations are multiples of ten seconds there, so that never decides
which side of a deadline a task is on.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.servers import free_port

_AGE = """
local pattern, ms, cursor = ARGV[1], tonumber(ARGV[2]), '0'
repeat
  local found = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
  cursor = found[1]
  for _, stream in ipairs(found[2]) do
    local pending = redis.pcall('XPENDING', stream, 'workers', '-', '+', 100000)
    if type(pending) == 'table' and not pending.err then
      for _, p in ipairs(pending) do
        redis.call('XCLAIM', stream, 'workers', p[2], 0, p[1], 'IDLE', p[3] + ms, 'JUSTID')
      end
    end
    local delayed = string.sub(stream, 1, -7) .. 'delayed'
    local scores = redis.call('ZRANGE', delayed, 0, -1, 'WITHSCORES')
    for i = 1, #scores, 2 do
      redis.call('ZADD', delayed, tonumber(scores[i + 1]) - ms, scores[i])
    end
  end
until cursor == '0'
"""


class RedisClock:
    """A model clock for Redis queues under one namespace: advance() ages their state."""

    def __init__(self, url: str, namespace: str, now: float = 1_000_000.0) -> None:
        import redis

        self.client: Any = redis.Redis.from_url(url)
        self.age = self.client.register_script(_AGE)
        self.namespace, self.now = namespace, now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Every pending entry seconds idler, every delayed task seconds nearer: one script."""
        self.now += seconds
        self.age(args=[f"{self.namespace}:*:stream", round(seconds * 1000)])

    def close(self) -> None:
        self.client.close()


class MotoClock:
    """moto's SQS clock, offset by however far the tests moved it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.offset, self.now = 0.0, now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.offset += seconds


class InProcessMoto:
    """moto's HTTP server on a free port, in this process, its SQS clock under our control.

    Requests are served one at a time: moto's SQS model has no locks, and two
    requests at once can lose a message (a DeleteMessage rebuilding the
    message list while a SendMessage appends to it, for instance). Real SQS
    does not, so neither should the server the suite holds it to. (Nothing here
    long-polls, so serving one request at a time blocks nobody for long.)
    """

    def __init__(self) -> None:
        try:
            import moto.sqs.models as sqs_models
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server
        except ImportError:
            pytest.fail("moto is not installed: pip install 'moto[server]'", pytrace=False)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.clock = MotoClock()
        self._models = sqs_models
        self._saved = (sqs_models.unix_time, sqs_models.unix_time_millis)
        real = self._saved[0]

        def unix_time(dt: Any = None) -> float:
            # time.time() is what moto computes from utcnow(), fifty times faster: moto's SQS
            # asks for the time of every message on every call.
            return float(real(dt)) if dt is not None else time.time() + self.clock.offset

        sqs_models.unix_time = unix_time
        sqs_models.unix_time_millis = lambda dt=None: unix_time(dt) * 1000.0
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def one_at_a_time(environ: Any, start_response: Any) -> Any:
            with lock:
                return list(app(environ, start_response))

        self.server = make_server("127.0.0.1", self.port, one_at_a_time, threaded=True,
                                  request_handler=MotoRequestHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def env(self, directory: str) -> dict[str, str]:
        """What boto3 (here and in child processes) needs to reach this server, and only it."""
        return {"AWS_ENDPOINT_URL_SQS": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": f"{directory}/no-aws-config",
                "AWS_SHARED_CREDENTIALS_FILE": f"{directory}/no-aws-credentials"}

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self._models.unix_time, self._models.unix_time_millis = self._saved


_running: list[InProcessMoto] = []  # one per process: it patches moto's clock


@pytest.fixture(scope="session")
def in_process_moto() -> Iterator[InProcessMoto]:
    """The one in-process moto; whichever module asks first starts it (and stops it last)."""
    if _running:
        yield _running[0]
        return
    moto = InProcessMoto()
    _running.append(moto)
    try:
        yield moto
    finally:
        _running.clear()
        moto.stop()


def fresh_name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"



def jobs_from(ingest: Any, count: int = 0, *, until: Callable[[], bool] | None = None,
              timeout_s: float = 30.0) -> list[str]:
    """The jobs an inbox's trigger makes, polling until count are made, or until until()
    holds (a landing was handled: a test then need not wait out the timeout for a job that
    must not come), or time is up."""
    made: list[str] = []
    done = until or (lambda: len(made) >= count)
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        made += ingest.poll()
    return made
