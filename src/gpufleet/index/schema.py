"""The index schema in SQLAlchemy Core, portable between SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

jobs = Table(
    "jobs", metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False, default="default"),
    Column("model", String(512), nullable=False),
    Column("input", Text, nullable=False),
    Column("output", Text, nullable=False),
    Column("total", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("cancelled", Boolean, nullable=False, default=False),
    Column("deadline_s", Float),  # done this long after created_at; NULL: the target drain time
    Column("priority", Integer, nullable=False, default=0),  # higher first
    # Putting the job's tasks on its queue (issue 11): while `enqueuer` is set, the process it
    # names is enqueueing the pending items in key order, through `enqueued_through`, and holds
    # the work until `enqueuer_until`; past that, whoever looks next finishes it.
    Column("enqueuer", String(64)),
    Column("enqueuer_until", Float),
    Column("enqueued_through", String(1024)),
    Column("enqueued_at", Float),  # when its tasks were last all enqueued
    Column("requeues", Integer, nullable=False, default=0, server_default="0"),  # by the sweeper
    Column("started_at", Float),  # when a worker first took one of its tasks: it is running
    Column("preprocess", Text),  # its preprocessing chain (issue 17), canonical; NULL: none
    # How its results are written (issue 17): NULL, one object per item; "shards", one JSONL
    # object per task.
    Column("results", String(16)),
)

items = Table(
    "items", metadata,
    Column("job_id", String(64), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(1024), primary_key=True),
    Column("status", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("worker", String(128)),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("infer_ms", Float),
    Index("ix_items_job_status", "job_id", "status"),
)

tags = Table(
    "tags", metadata,
    Column("job_id", String(64), primary_key=True),
    Column("key", String(1024), primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("tag_id", String(128), nullable=False),
    Column("label", String(256), nullable=False),
    # Tag search matches case-insensitively: the label lower-cased once, when written
    # (Python's str.lower, as the query's), so the search is an index lookup.
    Column("label_lower", String(256), nullable=False),
    Column("score", Float, nullable=False),
    Index("ix_tags_label_lower", "label_lower"),
    Index("ix_tags_tag_id", "tag_id"),
)

workers = Table(
    "workers", metadata,
    Column("id", String(128), primary_key=True),
    Column("host", String(256), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("model", String(512), nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("bootstrap_s", Float),
    # The fleet (issue 4): who launched it, what kind of capacity, and the time it used.
    Column("instance", String(128)),  # the provider's id: EC2 instance, local launch
    Column("capacity", String(16)),  # spot, on-demand
    Column("price_per_h", Float),
    Column("busy_s", Float),
    Column("idle_s", Float),
    Column("items", Integer),
    Column("state_since", Float),  # when it entered its state: a ready worker's idle start
    # Its GPUs (issue 10): how many the machine has (its pipelines share the machine's
    # price), and how busy and full the one it drives was at its last report (NVML).
    Column("gpus", Integer),
    Column("gpu_util_pct", Float),
    Column("gpu_memory_mb", Float),
)

# Manifests seen in an inbox: one row per object version, so a notification seen twice
# makes one job, and a refused manifest is not retried forever.
manifests = Table(
    "manifests", metadata,
    Column("id", String(64), primary_key=True),  # sha256 of inbox, key and version/ETag
    Column("inbox", Text, nullable=False),
    Column("key", String(1024), nullable=False),
    Column("version", String(256), nullable=False),
    Column("state", String(16), nullable=False),  # accepted, refused
    Column("job_id", String(64)),
    Column("reason", Text),
    Column("seen_at", Float, nullable=False),
)

# The controller's decisions with their reasons, newest last, so `gpufleet fleet` shows them.
decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(512), nullable=False),
    Column("at", Float, nullable=False),
    Column("desired", Integer, nullable=False),
    Column("doc", Text, nullable=False),  # JSON: actions and reasons
    Index("ix_decisions_model", "model", "id"),
)

# API keys (issue 5): only a SHA-256 of each key is kept; its id is the key's lookup prefix.
api_keys = Table(
    "api_keys", metadata,
    Column("id", String(32), primary_key=True),  # public: shown by `keys list`, part of the key
    Column("hash", String(64), nullable=False),  # sha256 hex of the whole key
    Column("tenant", String(64), nullable=False),
    Column("scopes", String(64), nullable=False),  # comma-separated: submit, read, admin
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

# Streaming sources (issue 17): `gpufleet stream` turns a stream's records into jobs, one per
# window. A window's events are recorded before its job is created and its records
# acknowledged, so a consumer that dies in between re-reads them and finds their job
# instead of making a second one; a source's checkpoint (a Kinesis shard's sequence number)
# is kept here too.
stream_windows = Table(
    "stream_windows", metadata,
    Column("id", String(64), primary_key=True),  # the job id it makes
    Column("stream", String(512), nullable=False),  # the source's URI, without secrets
    Column("state", String(16), nullable=False),  # open (job not yet made), enqueued
    Column("input", Text, nullable=False),
    Column("items", Integer, nullable=False),
    Column("opened_at", Float, nullable=False),
    Column("closed_at", Float),
    Index("ix_stream_windows_stream_state", "stream", "state"),
)

stream_events = Table(
    "stream_events", metadata,
    Column("stream", String(512), primary_key=True),
    # sha256 of what names the event: an S3 event's bucket, key and version; else the
    # record's position in the stream
    Column("event_id", String(64), primary_key=True),
    Column("window_id", String(64)),  # NULL: rejected
    Column("key", String(1024)),
    Column("state", String(16), nullable=False),  # accepted, rejected
    Column("reason", Text),
    Column("seen_at", Float, nullable=False),
    Index("ix_stream_events_window", "window_id"),
)

stream_checkpoints = Table(
    "stream_checkpoints", metadata,
    Column("stream", String(512), primary_key=True),
    Column("shard", String(256), primary_key=True),
    Column("position", String(256), nullable=False),  # e.g. the last sequence number taken
    Column("updated_at", Float, nullable=False),
)

# Completion notifications (issue 17): where a job's or a tenant's events go. A webhook's
# secret is kept as it is (it must sign every delivery); an SNS topic has none.
notify_targets = Table(
    "notify_targets", metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("job_id", String(64)),  # NULL: every job of the tenant created from now on
    Column("kind", String(16), nullable=False),  # webhook, sns
    Column("address", Text, nullable=False),  # the URL or the topic ARN
    Column("secret", String(128)),
    Column("events", String(64), nullable=False),  # comma-separated: created,finished,progress
    Column("progress_s", Float),  # progress at most this often (with "progress")
    Column("created_at", Float, nullable=False),
    Index("ix_notify_targets_tenant", "tenant"),
)

# The outbox: one row per (target, job, event), its id derived from the three, so an event
# noticed twice is one row and is delivered once; the dispatcher delivers the pending ones.
notify_outbox = Table(
    "notify_outbox", metadata,
    Column("id", String(64), primary_key=True),  # sha256 of target, job and event key
    Column("target_id", String(32), nullable=False),
    Column("job_id", String(64), nullable=False),
    Column("event", String(32), nullable=False),  # job.created, job.finished, job.progress
    Column("body", Text, nullable=False),  # the JSON delivered
    Column("state", String(16), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=False),  # due then (a claim pushes it on)
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("last_error", Text),
    Index("ix_notify_outbox_due", "state", "next_at"),
    Index("ix_notify_outbox_target_job", "target_id", "job_id"),
)

# Every delivery attempt, for `gpufleet notify log`.
notify_log = Table(
    "notify_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("outbox_id", String(64), nullable=False),
    Column("target_id", String(32), nullable=False),
    Column("job_id", String(64), nullable=False),
    Column("event", String(32), nullable=False),
    Column("at", Float, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("status", Integer),  # the HTTP status; NULL for SNS or no answer
    Column("error", Text),
    Column("ms", Float),
    Index("ix_notify_log_target", "target_id", "id"),
)
