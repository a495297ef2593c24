"""The nouns of gpufleet: jobs, items, tasks, results, and the workers that make them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from gpufleet import jsonbytes

_MAX_TRACE_CHARS = 512  # a traceparent is 55; anything much longer is not one


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class ItemStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # its job was cancelled before the item ran
    SKIPPED = "skipped"  # a preprocessing filter left it out, on purpose (its error: why)


class WorkerState(StrEnum):
    """What a live worker reports in its registry row, and what the controller plans with."""

    BOOTING = "booting"
    READY = "ready"  # up, bootstrapped, holding no lease
    BUSY = "busy"
    DRAINING = "draining"


class WorkerGone(StrEnum):
    """What a worker on its way out reports instead: the fleet plans it as draining."""

    INTERRUPTED = "interrupted"  # the platform is reclaiming its machine (a spot notice)
    STOPPED = "stopped"


class Capacity(StrEnum):
    """How a machine is bought."""

    SPOT = "spot"
    ON_DEMAND = "on-demand"


class Tag(NamedTuple):
    """One class a model saw in an item, with its score.

    A named tuple, not a frozen dataclass: a model makes several for every item, and a
    frozen dataclass's constructor sets each field through object.__setattr__: 1.0 us a
    tag against 0.35, and the no-op model's five tags of an item 10-15 us against 6-7
    (a 2-core AMD EPYC), time that holds the interpreter lock."""

    id: str
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    done: int
    failed: int
    cancelled: int = 0
    skipped: int = 0

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed - self.cancelled - self.skipped

    @property
    def finished(self) -> int:
        """Items with an outcome: done, failed, cancelled or skipped."""
        return self.total - self.pending

    def state(self, *, cancelled: bool = False, started: bool = False) -> JobState:
        """A job's state follows from its counts, whether a worker has taken one of its
        tasks yet (started), and whether it was cancelled."""
        if cancelled:
            return JobState.CANCELLED
        if self.done + self.failed + self.skipped == 0 and not (started and self.pending):
            return JobState.QUEUED
        if self.pending:
            return JobState.RUNNING
        if not self.failed:  # skipped items were left out on purpose: not a failure
            return JobState.SUCCEEDED
        return JobState.PARTIAL if self.done or self.skipped else JobState.FAILED


@dataclass(frozen=True, slots=True)
class JobUsage:
    """Worker-seconds a job used, its share of booting and idle time included, and their cost."""

    booting_s: float = 0.0
    busy_s: float = 0.0
    idle_s: float = 0.0
    cost: float = 0.0

    @property
    def worker_s(self) -> float:
        return self.booting_s + self.busy_s + self.idle_s

    def to_json(self) -> dict[str, float]:
        return {"booting_s": round(self.booting_s, 3), "busy_s": round(self.busy_s, 3),
                "idle_s": round(self.idle_s, 3), "worker_s": round(self.worker_s, 3),
                "cost": round(self.cost, 6)}


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    model: str
    input: str
    output: str
    counts: Counts
    created_at: float
    tenant: str = "default"
    cancelled: bool = False
    deadline_s: float | None = None  # None: the configured target drain time
    priority: int = 0
    usage: JobUsage = field(default_factory=JobUsage)
    started_at: float | None = None  # when a worker first took one of its tasks
    preprocess: str | None = None  # its preprocessing chain (preprocess/chain.py), if any
    results: str = "objects"  # or "shards": one JSONL object per task, not one per item

    @property
    def state(self) -> JobState:
        return self.counts.state(cancelled=self.cancelled, started=self.started_at is not None)

    def summary(self) -> dict[str, Any]:
        return {
            "job": self.id,
            "state": self.state.value,
            "model": self.model,
            "input": self.input,
            "output": self.output,
            "total": self.counts.total,
            "done": self.counts.done,
            "failed": self.counts.failed,
            "cancelled": self.counts.cancelled,
            "skipped": self.counts.skipped,
            "pending": self.counts.pending,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "deadline_s": self.deadline_s,
            "priority": self.priority,
            "results": self.results,
            "usage": self.usage.to_json(),
            **({"preprocess": self.preprocess} if self.preprocess else {}),
        }


@dataclass(frozen=True, slots=True)
class Task:
    """One queue message: a chunk of items of one job."""

    job: str
    keys: tuple[str, ...]
    input: str
    output: str
    # Deliveries of the task this one was split from that never finished (the worker died):
    # they count against GPUFLEET_MAX_RECEIVES together with this task's own receives.
    attempts: int = 0
    # The W3C traceparent of the span that enqueued it, so a worker's spans join the
    # submitter's trace; None (and absent from the message) when nothing traced it.
    trace: str | None = None
    # The job's preprocessing chain, canonical (preprocess/chain.py); absent when none.
    preprocess: str | None = None
    # "shards": write one JSONL object for the task, not one object per item; None (and
    # absent from the message) for the default, one object per item.
    results: str | None = None

    def encode(self) -> str:
        body: dict[str, Any] = {"job": self.job, "keys": list(self.keys),
                                "input": self.input, "output": self.output}
        if self.attempts:
            body["attempts"] = self.attempts
        if self.trace:
            body["trace"] = self.trace
        if self.preprocess:
            body["preprocess"] = self.preprocess
        if self.results:
            body["results"] = self.results
        return json.dumps(body)

    @classmethod
    def decode(cls, body: str) -> Task:
        data = json.loads(body)
        attempts = data.get("attempts", 0)
        if not isinstance(attempts, int) or attempts < 0:
            raise ValueError(f"attempts={attempts!r} is not a count")
        trace = data.get("trace")  # only a hint: what is not a short string is dropped
        if not isinstance(trace, str) or len(trace) > _MAX_TRACE_CHARS:
            trace = None
        preprocess = data.get("preprocess")
        if preprocess is not None and not isinstance(preprocess, str):
            raise ValueError(f"preprocess={preprocess!r} is not a chain spec")
        results = data.get("results")
        if results not in (None, "shards"):
            raise ValueError(f"results={results!r} is not shards")
        return cls(job=data["job"], keys=tuple(data["keys"]), input=data["input"],
                   output=data["output"], attempts=attempts, trace=trace,
                   preprocess=preprocess or None, results=results)


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What happened to one item. Written twice, it is the same row and object."""

    job: str
    key: str
    status: ItemStatus
    tags: tuple[Tag, ...] = ()
    error: str | None = None
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    infer_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "key": self.key,
            "status": self.status.value,
            # By hand: dataclasses.asdict deep-copies every field, 20 µs an item here.
            "tags": [{"id": t.id, "label": t.label, "score": t.score} for t in self.tags],
            "error": self.error,
            "worker": self.worker,
            "finished_at": self.finished_at,
        }

    def document(self, model: str, preprocess: str | None = None) -> bytes:
        """The result object as the store holds it (and a JSONL shard line): its JSON, the
        model, and the preprocessing chain that made the model's input, if there was one."""
        doc = {**self.to_json(), "model": model}
        if preprocess:
            doc["preprocess"] = preprocess
        return jsonbytes.dumps(doc)


@dataclass(frozen=True, slots=True)
class Item:
    """One item as the index holds it: what the CLI lists and the API serves (the read model;
    ``ItemResult`` is what a worker writes)."""

    job: str
    key: str
    status: ItemStatus
    tags: tuple[Tag, ...] = ()  # best first
    error: str | None = None
    attempts: int = 0
    worker: str | None = None  # which worker wrote it: the operator's, never the API's
    finished_at: float | None = None

    def to_json(self, *, worker: bool = False) -> dict[str, Any]:
        """As the API serves it; ``worker``: with the worker's id, for the operator's CLI."""
        doc = {"job": self.job, "key": self.key, "status": self.status.value,
               "tags": [{"id": t.id, "label": t.label, "score": t.score} for t in self.tags],
               "error": self.error,
               "attempts": self.attempts, "finished_at": self.finished_at}
        if worker:
            doc["worker"] = self.worker
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Item:
        """What ``to_json`` wrote (an API page, read back by the remote CLI)."""
        return cls(job=doc["job"], key=doc["key"], status=ItemStatus(doc["status"]),
                   tags=tuple(Tag(t["id"], t["label"], float(t["score"])) for t in doc["tags"]),
                   error=doc.get("error"), attempts=int(doc.get("attempts") or 0),
                   worker=doc.get("worker"), finished_at=doc.get("finished_at"))
