"""Rolling jobs from a stream: records gather in a window, each window becomes one job.

A window closes at ``max_items`` items or ``max_s`` seconds after its first record,
whichever comes first. Closing it, in this order:

1. its items' events are looked up in the index: those seen before (a record the source
   offered again after a crash) are dropped, they are in a job already;
2. the rest are recorded as the window's events, the window marked open (one
   transaction per job: events of one bucket, or of ``--input``, make one job);
3. the job is made through ``jobs.create_job``, the one way into a job, with the
   window's id as its job id;
4. the window is marked enqueued, rejections recorded;
5. only then are its records acknowledged to the source.

A consumer that dies after 2 finds the open window when it starts (``recover``) and
makes its job, or finds it made; after 3 or 4 the records come back and step 1 drops
them. So every record ends in exactly one job, or rejected with its reason.

Back-pressure: while the model's backlog (items pending in the index) is at least
``max_backlog``, nothing is read; the source keeps the records, not this process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gpufleet.config import Settings
from gpufleet.errors import GpufleetError, JobNotFound, Unavailable
from gpufleet.index import Index
from gpufleet.index.fleet_records import FleetRecords
from gpufleet.index.stream_records import Rejection, StreamRecords
from gpufleet.jobs import JobRequest, check_results, create_job, new_job_id
from gpufleet.streams.records import Entry, read_record
from gpufleet.streams.source import Record, StreamSource

log = logging.getLogger(__name__)
_BACKLOG_LOOK_S = 1.0  # the backlog is read at most this often (one query on the index)
_FORGET_EVERY_S = 3600.0  # old events are dropped this often


@dataclass(frozen=True, kw_only=True)
class WindowRules:
    max_items: int = 1000  # a window closes at this many items (or records)...
    max_s: float = 10.0  # ...or this long after its first record, whichever comes first
    max_backlog: int = 100_000  # items pending for the model; reading stops at this; 0: off
    poll_s: float = 1.0  # the longest one read waits for records
    # Events are kept this long (a week), to drop a record offered again: after a crash
    # before its ack (seconds or minutes) or an S3 event notified twice (minutes).
    keep_events_s: float = 7 * 86400.0


@dataclass
class Stats:
    records: int = 0
    items: int = 0
    jobs: int = 0
    duplicates: int = 0  # events already in a job: the source offered them again
    rejected: int = 0
    paused: int = 0  # reads skipped for back-pressure
    job_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobTemplate:
    """What every window's job is made with, beside its items."""

    model: str
    tenant: str = "default"
    preprocess: str | None = None  # a canonical chain (preprocess/chain.py)
    results: str = "objects"  # or "shards"

    def __post_init__(self) -> None:
        check_results(self.results)  # at start, not at the first window's job


class StreamConsumer:
    def __init__(self, settings: Settings, index: Index, source: StreamSource, *,
                 job: JobTemplate, input: str | None = None,
                 rules: WindowRules = WindowRules(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.index, self.source, self.job = settings, index, source, job
        self.input, self.rules, self.clock = input, rules, clock
        self.records = StreamRecords(index)
        self.stats = Stats()
        self._reset()
        self._backlog, self._backlog_at = 0, float("-inf")
        self._forgot_at = float("-inf")
        if rules.max_s >= source.hold_s:
            log.warning("stream %s: a window may stay open %g s, but the source offers an "
                        "unacknowledged record again after %g s: it will be read twice and "
                        "dropped the second time", source.uri, rules.max_s, source.hold_s)

    def _reset(self) -> None:
        self._held: list[Record] = []
        self._positions: set[str] = set()
        self._entries: dict[str, Entry] = {}
        self._rejections: list[Rejection] = []
        self._opened: float | None = None

    # -- the loop -----------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Make the job of every window a consumer of this stream left open (it died)."""
        made = []
        for window in self.records.open_windows(self.source.uri):
            log.warning("stream %s: window %s was left open; making its job",
                        self.source.uri, window.id)
            if self._make_job(window.id, window.input):
                made.append(window.id)
        return made

    def step(self) -> list[str]:
        """Read once (unless backlogged) and close the window if it is due; the jobs made."""
        if self.clock() - self._forgot_at >= _FORGET_EVERY_S:
            self._forgot_at = self.clock()
            self.records.forget(self.source.uri,
                                before=self.index.clock() - self.rules.keep_events_s)
        made = self._close() if self._due() else []
        if self._backlogged():
            self.stats.paused += 1
            time.sleep(min(self.rules.poll_s, self._left_s()))
            return made + (self._close() if self._due() else [])
        room = self.rules.max_items - max(len(self._entries), len(self._held))
        records = self.source.read(room, wait_s=min(self.rules.poll_s, self._left_s()))
        for record in records:
            self._take(record)
        return made + (self._close() if self._due() else [])

    def flush(self) -> list[str]:
        """Close the window now, whatever its size and age."""
        return self._close() if self._held else []

    @property
    def holding(self) -> int:
        """Records read and not yet acknowledged."""
        return len(self._held)

    def _left_s(self) -> float:
        if self._opened is None:
            return self.rules.poll_s
        return max(0.0, self.rules.max_s - (self.clock() - self._opened))

    def _due(self) -> bool:
        if not self._held:
            return False
        full = max(len(self._entries), len(self._held)) >= self.rules.max_items
        return full or self._left_s() <= 0

    def _backlogged(self) -> bool:
        if not self.rules.max_backlog:
            return False
        now = self.clock()
        if now - self._backlog_at >= _BACKLOG_LOOK_S:
            before = self._backlog >= self.rules.max_backlog
            open_jobs = FleetRecords(self.index).open_jobs(self.job.model)
            self._backlog = sum(j.pending for j in open_jobs)
            self._backlog_at = now
            after = self._backlog >= self.rules.max_backlog
            if after != before:
                log.info("stream %s: %s (backlog %d items, bound %d)", self.source.uri,
                         "paused: the fleet is behind" if after else "reading again",
                         self._backlog, self.rules.max_backlog)
        return self._backlog >= self.rules.max_backlog

    # -- a window -----------------------------------------------------------------------

    def _take(self, record: Record) -> None:
        if self._opened is None:
            self._opened = self.clock()
        self._held.append(record)  # acknowledged with the window, whatever it holds
        self.stats.records += 1
        if record.position in self._positions:  # offered again while this window is open
            return
        self._positions.add(record.position)
        entries, rejections = read_record(record.data, position=record.position,
                                          input=self.input)
        for r in rejections:
            log.warning("stream %s: record %s rejected: %s%s", self.source.uri,
                        record.position, r.reason, f": {r.key!r}" if r.key else "")
        self._rejections += rejections
        for entry in entries:
            self._entries.setdefault(entry.event_id, entry)

    def _close(self) -> list[str]:
        uri = self.source.uri
        known = self.records.known(uri, self._entries)
        fresh = [e for e in self._entries.values() if e.event_id not in known]
        self.stats.duplicates += len(self._entries) - len(fresh)
        made = []
        by_input: dict[str, list[Entry]] = {}
        for entry in fresh:
            by_input.setdefault(entry.input, []).append(entry)
        for where, entries in by_input.items():
            window = new_job_id()
            count = self.records.open_window(uri, window, input=where,
                                             events=[(e.event_id, e.key) for e in entries])
            if self._make_job(window, where):
                made.append(window)
                self.stats.items += count
        self.records.reject(uri, self._rejections)
        self.stats.rejected += len(self._rejections)
        self.source.ack(self._held)  # only now: every item above is in an enqueued job
        self._reset()
        if made:
            self._backlog_at = float("-inf")  # the backlog just grew: look again
        self.stats.jobs += len(made)
        self.stats.job_ids += made
        return made

    def _make_job(self, window: str, input: str) -> bool:
        """The window's job, made unless it exists; the window marked enqueued. False when
        there was nothing to make or the job was refused (its events stay recorded)."""
        keys = self.records.window_keys(window)
        if not keys:  # every event was taken by another consumer meanwhile
            self.records.close_window(window, state="empty")
            return False
        try:
            self.index.job(window)
        except JobNotFound:
            try:
                job = create_job(self.settings, self.index, JobRequest(
                    items=keys, input=input, model=self.job.model, job_id=window,
                    tenant=self.job.tenant, preprocess=self.job.preprocess,
                    results=self.job.results))
            except Unavailable:
                raise
            except GpufleetError as exc:  # e.g. an input location no store can open
                log.error("stream %s: window %s refused, no job made: %s", self.source.uri,
                          window, exc)
                self.records.close_window(window, state="refused")
                return False
            log.info("stream %s: job %s made (%d item(s) from %s)", self.source.uri,
                     job.id, job.counts.total, input)
        self.records.close_window(window)
        return True


def run(make: Callable[[], StreamConsumer], *, stop: threading.Event,
        idle_exit_s: float = 0.0, retry_s: float = 5.0) -> Stats:
    """Consume until stop is set (or nothing was read for idle_exit_s, when > 0).

    Transient trouble (the source, index or queue unreachable) drops the consumer, records
    unacknowledged, and starts a fresh one after retry_s: it recovers what was left open,
    and the source offers the rest again.
    """
    total = Stats()
    while not stop.is_set():
        consumer = None
        try:
            consumer = make()
            consumer.recover()
            last = time.monotonic()
            while not stop.is_set():
                seen = consumer.stats.records
                consumer.step()
                if consumer.stats.records != seen or consumer.holding:
                    last = time.monotonic()
                elif idle_exit_s and time.monotonic() - last >= idle_exit_s:
                    stop.set()
            consumer.flush()
        except Unavailable as exc:
            log.warning("stream: %s; starting again in %g s", exc, retry_s)
            stop.wait(retry_s)
        finally:
            if consumer is not None:
                _add(total, consumer.stats)
                consumer.source.close()
    return total


def _add(total: Stats, more: Stats) -> None:
    for name in ("records", "items", "jobs", "duplicates", "rejected", "paused"):
        setattr(total, name, getattr(total, name) + getattr(more, name))
    total.job_ids += more.job_ids
