"""The dispatcher: notice new events, then deliver the outbox's due rows, retrying.

It runs wherever something looks after jobs: in a thread beside the
controller's tick (``Background``: a slow receiver never delays scaling), at
the end of ``gpufleet submit --wait``, and by hand (``gpufleet notify run``).
Several may run at once: each row is claimed before it is sent. A pass sends to
``GPUFLEET_NOTIFY_CONCURRENCY`` targets at once, each target's events in the order
noticed, so one slow receiver holds up only its own. A failed
attempt is retried after a random wait up to ``base * 2**attempt`` (full jitter,
so receivers that failed together are not hit together again), until
``GPUFLEET_NOTIFY_MAX_ATTEMPTS``; a refused target or a 4xx answer fails it at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gpufleet.config import Settings
from gpufleet.errors import ConfigError, GpufleetError
from gpufleet.index import Index
from gpufleet.index.outbox import Outbox, OutboxRow
from gpufleet.notify import sns, webhook
from gpufleet.notify.events import notice
from gpufleet.notify.targets import Target, TargetStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pass:
    """What a pass (or a drain) did."""

    noticed: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0

    def __add__(self, other: Pass) -> Pass:
        return Pass(self.noticed + other.noticed, self.delivered + other.delivered,
                    self.retried + other.retried, self.failed + other.failed)

    def describe(self) -> str:
        return (f"{self.noticed} event(s) noticed, {self.delivered} delivered, "
                f"{self.retried} to retry, {self.failed} failed")


class Dispatcher:
    def __init__(self, settings: Settings, index: Index, *,
                 uniform: Callable[[float, float], float] = random.uniform,
                 http: Any = None) -> None:
        """uniform: the jitter's draw (tests make it certain); http: an httpx.Client to use."""
        self.settings, self.index = settings, index
        self.config = settings.notify
        self.outbox = Outbox(index)
        self.targets = TargetStore(index, settings.notify)
        self.uniform, self.http = uniform, http
        self._own_http = http is None  # made on first use, kept: connections are reused
        self._sns: dict[str, Any] = {}  # one SNS client per region
        self._lock = threading.Lock()  # clients are made once, by one of the pass's threads

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_http and self.http is not None:
            self.http.close()
            self.http = None

    def _http(self) -> Any:
        with self._lock:
            if self.http is None:
                self.http = webhook.new_client(self.config.timeout_s)
            return self.http

    def run_once(self) -> Pass:
        """Notice what happened, then send what is due now (one batch)."""
        targets = self.targets.signing()
        noticed = notice(self.index, self.outbox, list(targets.values())) if targets else 0
        done = Pass(noticed=noticed)
        due = self.outbox.due(limit=self.config.batch)
        if not due:
            return done
        by_target: dict[str, list[OutboxRow]] = {}
        for row in due:
            by_target.setdefault(row.target_id, []).append(row)

        def send(rows: list[OutboxRow]) -> Pass:  # one target's, in the order noticed
            sent = Pass()
            for row in rows:
                # Claimed just before it is sent, so its lease covers this attempt only.
                if self.outbox.claim(row, lease_s=self.config.timeout_s + 30):
                    sent += self._deliver(row, targets.get(row.target_id))
            return sent

        # Targets at once, so a slow receiver holds up only its own events.
        with ThreadPoolExecutor(max_workers=self.config.concurrency,
                                thread_name_prefix="gpufleet-notify") as pool:
            for outcome in pool.map(send, by_target.values()):
                done += outcome
        return done

    def drain(self, *, budget_s: float = 30.0) -> Pass:
        """Passes until nothing more is due now, or budget_s is spent."""
        deadline = time.monotonic() + budget_s
        total = Pass()
        while True:
            done = self.run_once()
            total += done
            if not (done.delivered or done.retried or done.failed) or \
                    time.monotonic() > deadline or not self.outbox.due(limit=1):
                return total

    def _deliver(self, row: OutboxRow, target: Target | None) -> Pass:
        started = time.monotonic()
        try:
            outcome = self._send(row, target)
        except ConfigError as exc:  # httpx or boto3 missing, no AWS region: an operator's fix
            outcome = webhook.Outcome(ok=False, retry=True, error=str(exc))
        ms = (time.monotonic() - started) * 1000
        retry_at = None
        if not outcome.ok and outcome.retry and row.attempts + 1 < self.config.max_attempts:
            ceiling = min(self.config.backoff_max_s,
                          self.config.backoff_base_s * 2 ** row.attempts)
            wait_s = self.uniform(0.0, ceiling)
            if outcome.retry_after_s:  # the receiver said when (seconds; dates are ignored)
                wait_s = min(max(wait_s, outcome.retry_after_s), self.config.backoff_max_s)
            retry_at = self.index.clock() + wait_s
        self.outbox.settle(row, ok=outcome.ok, status=outcome.status, error=outcome.error,
                           ms=ms, retry_at=retry_at)
        if outcome.ok:
            return Pass(delivered=1)
        log.warning("notification %s for job %s to target %s: %s%s", row.event, row.job_id,
                    row.target_id, outcome.error, " (will retry)" if retry_at else "")
        return Pass(retried=1) if retry_at is not None else Pass(failed=1)


    def _send(self, row: OutboxRow, target: Target | None) -> webhook.Outcome:
        if target is None:
            return webhook.Outcome(ok=False, retry=False, error="target removed")
        if target.kind == "sns":
            with self._lock:
                sns.publish_client(target.address, self._sns)
            return sns.publish(target.address, body=row.body, clients=self._sns)
        return webhook.post(
            target.address, secret=target.secret or "", body=row.body, event=row.event,
            delivery_id=row.id, timeout_s=self.config.timeout_s,
            allow_http=bool(self.config.allow_http),
            allow_private=bool(self.config.allow_private), client=self._http())


class Background:
    """The dispatcher in a thread of its own, started by ``kick`` unless one is running:
    the controller's tick asks for a drain and goes on at once."""

    def __init__(self, dispatcher: Dispatcher, *, budget_s: float = 60.0) -> None:
        self.dispatcher, self.budget_s = dispatcher, budget_s
        self._thread: threading.Thread | None = None

    def kick(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="gpufleet-notify", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def close(self, *, timeout_s: float = 5.0) -> None:
        """Wait a little for a pass under way (what it has not sent stays due), then close."""
        self.join(timeout_s)
        if self._thread is None or not self._thread.is_alive():
            self.dispatcher.close()

    def _run(self) -> None:
        try:
            self.dispatcher.drain(budget_s=self.budget_s)
        except GpufleetError as exc:  # the index is away: the next tick tries again
            log.warning("notifications: %s", exc)
        except Exception:  # a bug here must not end notifications (nor the controller)
            log.exception("notifications: the pass failed; the next tick tries again")
