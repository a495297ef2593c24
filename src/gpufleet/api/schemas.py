"""Request and response bodies: the OpenAPI document is generated from these."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gpufleet.manifest import MAX_DEADLINE_S, MAX_PRIORITY

JobStateName = Literal["queued", "running", "succeeded", "partial", "failed", "cancelled"]
ItemStatusName = Literal["pending", "done", "failed", "cancelled", "skipped"]


class Error(BaseModel):
    detail: str


class JobSubmission(BaseModel):
    """A job: the items themselves or a manifest object; the rest defaults from settings."""

    model_config = ConfigDict(extra="forbid")

    items: list[str] | None = Field(None, description="Object keys, relative to input.")
    manifest: str | None = Field(None, description="A manifest object, e.g. "
                                 "s3://bucket/manifests/m.csv or file:///data/m.jsonl.")
    input: str | None = Field(None, description="Where the keys live.")
    output: str | None = Field(None, description="Where result objects go.")
    model: str | None = Field(None, max_length=256, description="A model spec the operator "
                              "admits (GPUFLEET_API_MODELS; by default the built-in models).")
    deadline_s: float | None = Field(None, gt=0, le=MAX_DEADLINE_S, allow_inf_nan=False,
                                     description="Should be done this many seconds from now.")
    priority: int | None = Field(None, ge=-MAX_PRIORITY, le=MAX_PRIORITY,
                                 description="Higher first.")
    preprocess: str | None = Field(None, max_length=1000, description="Steps run on each "
                                   "image before the model, e.g. 'exif,min-size=64,grayscale'; "
                                   "user steps only as GPUFLEET_API_PREPROCESS_STEPS admits.")
    results: Literal["objects", "shards"] | None = Field(
        None, description="objects (the default): one result object per item; shards: one "
        "JSONL object per task, under <output>/<job>/shards/.")

    @field_validator("manifest", "input", "output", "model", "preprocess")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(ord(c) < 32 for c in value)
                                  or not _utf8(value)):
            raise ValueError("must be non-empty UTF-8 text without control characters")
        return value


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class JobView(BaseModel):
    """A job's state and counts, its rate and ETA from item timings, and its cost so far."""

    model_config = ConfigDict(extra="allow")

    job: str
    state: JobStateName
    model: str
    input: str
    output: str
    total: int
    done: int
    failed: int
    cancelled: int = Field(description="Items its cancellation stopped before they ran.")
    skipped: int = Field(0, description="Items its preprocessing filters left out (each "
                         "item's error says why); a job of done and skipped items succeeded.")
    preprocess: str | None = Field(None, description="Its preprocessing chain, if any.")
    pending: int
    created_at: float
    started_at: float | None = Field(
        None, description="When a worker first took one of its tasks (it is running).")
    results: Literal["objects", "shards"] = Field(
        "objects", description="How its results are written: an object per item, or JSONL "
        "shards, one per task.")
    rate_per_s: float | None = Field(description="Items finished per second so far.")
    eta_s: float | None = Field(description="Seconds until every item is finished, "
                                "at that rate; null when finished or not started.")
    cost_so_far: float | None = Field(description="Worker cost charged to the job so far.")
    deadline_s: float | None = Field(None, description="Given at submission.")
    deadline_at: float | None = Field(None, description="created_at + deadline_s.")
    deadline: Literal["met", "missed", "at_risk", "on_track", "unknown"] | None = Field(
        None, description="Finished: met or missed. Running: missed (past it), at_risk (the "
        "ETA ends after it), on_track, or unknown (no rate yet). Null without a deadline.")
    finished_at: float | None = Field(None, description="When its last item ended, once "
                                      "finished.")


class JobPage(BaseModel):
    jobs: list[JobView]
    next: str | None = Field(description="Cursor for the next page; null on the last.")


class TagView(BaseModel):
    id: str
    label: str
    score: float


class ItemView(BaseModel):
    job: str
    key: str
    status: ItemStatusName
    tags: list[TagView]
    error: str | None
    attempts: int
    finished_at: float | None


class ItemPage(BaseModel):
    items: list[ItemView]
    next: str | None


class SearchHit(ItemView):
    score: float = Field(description="The matching tag's score.")


class SearchPage(BaseModel):
    items: list[SearchHit]
    next: str | None


class DeadLetterView(BaseModel):
    id: str
    job: str | None
    items: int
    receives: int
    model: str
    error: str
    died_at: float


class DeadLetters(BaseModel):
    dead_letters: list[DeadLetterView]


class Redriven(BaseModel):
    redriven: int
    left_shared: list[str] = Field(description="Models whose queues also hold other "
                                   "tenants' dead letters: an operator redrives those.")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description="queue, index, store: ok or the error.")


class Fleet(BaseModel):
    workers: dict[str, int] = Field(description="Live workers serving the tenant's models, "
                                    "by state.")
    models: dict[str, dict[str, int]] = Field(description="Per model of the tenant's open "
                                              "jobs: jobs, pending (items).")


class WorkerView(BaseModel):
    """A worker (one GPU's pipeline) of one of the tenant's models, as it last reported."""

    id: str
    model: str
    state: str = Field(description="booting, ready, busy, draining, stopped, interrupted...")
    live: bool = Field(description="Reported within the last 30 s and not stopped.")
    capacity: str | None = Field(description="spot or on-demand; null for a local worker.")
    instance: str | None = Field(description="The provider's machine id.")
    gpus: int | None
    gpu_util_pct: float | None
    gpu_memory_mb: float | None
    items: int | None = Field(description="Items it processed.")
    items_per_s: float | None = Field(description="Items per second since it was ready.")
    bootstrap_s: float | None
    started_at: float
    last_seen: float = Field(description="Its last heartbeat.")
    uptime_s: float


class Workers(BaseModel):
    workers: list[WorkerView]


class FleetDecision(BaseModel):
    """One decision of the controller on one of the tenant's models."""

    model: str
    at: float
    desired: int
    actual: int = Field(description="Machines the controller saw, whatever their state.")
    by_state: dict[str, int]
    by_capacity: dict[str, int]
    start: int
    drain: int
    reasons: list[str] = Field(description="Why; other tenants' job ids are replaced.")
    late: list[str] = Field(description="The tenant's jobs it expected to miss their "
                            "deadline.")
    finish_at: float | None


class FleetPoint(BaseModel):
    """One bucket of the tenant's own work."""

    at: float = Field(description="The bucket's start.")
    done: int
    failed: int
    items_per_s: float
    backlog: int = Field(description="Items pending at the bucket's end.")
    cost: float = Field(description="Worker cost of the items it finished.")


class FleetHistory(BaseModel):
    since: float
    until: float
    bucket_s: int
    decisions: list[FleetDecision] = Field(description="Oldest first.")
    series: list[FleetPoint]


class KeyView(BaseModel):
    id: str = Field(description="The key's public id (as gpufleet keys list shows it).")
    tenant: str
    scopes: list[Literal["submit", "read", "admin"]]
