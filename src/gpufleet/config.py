"""Settings, read from the environment (``GPUFLEET_*``) in one place, in sections.

The top level says where things are: the home of the embedded state, the
backends by URL (``GPUFLEET_QUEUE=sqlite:///...``, ``GPUFLEET_DB=...``), the
input and output locations, the model, the cache, the API to talk to. The
sections hold the knobs of one part each, and each checks its own values:

- ``tasks``: how work is cut and retried (``GPUFLEET_CHUNK_SIZE``, leases, receives,
  backoff, the sweeper);
- ``worker``: how a worker reads and decodes (concurrency, pixel and byte limits,
  drain grace), and where it serves its metrics;
- ``fleet``: where a worker runs and what it costs (instance, capacity, notices,
  the Auto Scaling group, prices, the default deadline);
- ``storage``: encryption of what gpufleet writes to S3;
- ``server``: the HTTP API server (``GPUFLEET_API_*``: limits, quotas, signing,
  networks);
- ``notify``: completion notifications (``GPUFLEET_NOTIFY_*``: retries, the SSRF guard).

An unknown ``GPUFLEET_*`` name is refused (with the nearest known one), so a
typo never silently falls back to a default; every problem is reported at
once, one line each.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gpufleet.errors import ConfigError
from gpufleet.logs import FORMATS, LEVELS

PREFIX = "GPUFLEET_"


def _default_home() -> Path:
    return Path.home() / ".gpufleet"


def _default_model_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpufleet"


def _at_least_one(section: Any, names: tuple[str, ...], env_prefix: str = "") -> list[str]:
    return [f"{PREFIX}{env_prefix}{name.upper()} must be at least 1"
            for name in names if getattr(section, name) < 1]


@dataclass(frozen=True, kw_only=True)
class TaskSettings:
    """Items per queue message, leases, retries, and the sweeper that ends every job."""

    chunk_size: int = 32
    visibility_timeout_s: float = 60.0
    max_receives: int = 5
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    # A job whose pending items have no task anywhere, idle this long, is enqueued again,
    # at most max_requeues times; then its pending items fail.
    sweep_quiet_s: float = 60.0
    max_requeues: int = 3
    # Entries a tar shard may hold (shards.py): a larger one is refused at submission.
    max_shard_entries: int = 100_000

    def problems(self) -> list[str]:
        found = _at_least_one(self, ("chunk_size", "max_receives", "max_shard_entries"))
        if self.visibility_timeout_s <= 0:
            found.append(f"{PREFIX}VISIBILITY_TIMEOUT_S must be positive")
        return found


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """How a worker fetches and decodes, within what, and how long it may take to drain."""

    fetch_concurrency: int = 0  # objects read or written at once; 0: each store's own
    decode_threads: int = 0  # 0: one per core
    drain_grace_s: float = 120.0
    max_pixels: int = 120_000_000
    decode_budget_mb: int = 512  # decoded bytes in flight per worker; bigger images queue
    max_object_bytes: int = 64 * 1024 * 1024
    # Prometheus /metrics on this port (0: off); `--gpus` children take it, it + 1, ...
    metrics_port: int = 0

    def problems(self) -> list[str]:
        found = _at_least_one(self, ("max_pixels", "decode_budget_mb"))
        if self.fetch_concurrency < 0:
            found.append(f"{PREFIX}FETCH_CONCURRENCY must be at least 1 (0: each store's own)")
        if not 0 <= self.metrics_port < 65536:
            found.append(f"{PREFIX}METRICS_PORT must be a TCP port, 1 to 65535 (0: off)")
        return found


@dataclass(frozen=True, kw_only=True)
class FleetSettings:
    """Where a worker runs, how it hears of an interruption, what it costs (issue 4)."""

    instance: str = ""  # the provider's id for this worker (set by the provider; EC2: asked)
    capacity: str = ""  # spot or on-demand; empty: asked of EC2 metadata, else on-demand
    imds_url: str = ""  # EC2 instance metadata, e.g. http://169.254.169.254; empty: not on EC2
    notice_file: str = ""  # a file whose appearance is an interruption notice (local)
    notice_poll_s: float = 5.0
    aws_asg: str = ""  # the Auto Scaling group the worker's instance belongs to
    aws_lifecycle_hook: str = ""  # completed by the worker after draining, when set
    k8s_namespace: str = ""  # where worker pods go; empty: the controller's own, else default
    k8s_image: str = ""  # the worker pods' image, e.g. registry.example.com/gpufleet:0.1.0
    k8s_gpus: int = 1  # nvidia.com/gpu per worker pod; 0: a CPU-only cluster
    k8s_settings: str = "gpufleet-settings"  # ConfigMap (and optional Secret) the pods read
    k8s_service_account: str = "gpufleet-worker"  # the worker pods' service account
    spot_price_per_h: float = 0.2104  # per machine-hour (g4dn.xlarge), for cost estimates
    on_demand_price_per_h: float = 0.526
    target_drain_s: float = 1800.0  # a job without a deadline should be done this soon

    def problems(self) -> list[str]:
        return [] if self.k8s_gpus >= 0 else ["GPUFLEET_K8S_GPUS must be 0 or more"]


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    """Server-side encryption of what gpufleet writes to S3, and how a worker reads from it."""

    sse: str = ""  # AES256 or aws:kms; empty: the bucket's default
    sse_kms_key_id: str = ""  # a KMS key id or ARN for aws:kms (implies aws:kms)
    # auto: a worker's reads and result writes, many in flight, through the AWS CRT where
    # awscrt is installed (store/s3_crt.py), else boto3; boto3: always boto3.
    s3_client: str = "auto"

    def problems(self) -> list[str]:
        found = []
        if self.sse not in ("", "AES256", "aws:kms"):
            found.append(f"{PREFIX}SSE={self.sse!r}: expected AES256 or aws:kms")
        if self.s3_client not in ("auto", "boto3"):
            found.append(f"{PREFIX}S3_CLIENT={self.s3_client!r}: expected auto or boto3")
        return found


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """The HTTP API server (issue 5), read from ``GPUFLEET_API_<NAME>``."""

    rate_per_s: float = 50.0  # requests per key per second (token bucket)
    burst: int = 100  # bucket size: a burst of this many is allowed
    max_page: int = 1000  # items per page, at most
    max_items: int = 1_000_000  # items per job submitted through the API
    max_body_bytes: int = 32 * 1024 * 1024
    url_ttl_s: float = 900.0  # signed download URLs; at most 7 days
    signing_key: str = field(default="", repr=False)  # empty: kept in $HOME/api-signing.key
    allow: str = ""  # client CIDRs, comma-separated; empty: any client
    deny: str = ""  # client CIDRs refused (wins over allow)
    trusted_proxies: str = ""  # CIDRs whose X-Forwarded-For is believed
    locations: str = ""  # tenant=location,...: more locations granted to a tenant
    request_timeout_s: float = 60.0  # a request's headers and body must arrive within it
    public_url: str = ""  # e.g. https://fleet.example.com: signed URLs start with it
    cache_ttl_s: float = 30.0  # how long finished results stay in the cache
    open_queues: int = 16  # queue handles the API keeps open (least recently used closed)
    max_models: int = 4  # distinct model specs among a tenant's open jobs
    max_open_jobs: int = 100  # a tenant's open jobs (not cancelled, an item pending)
    max_open_items: int = 2_000_000  # items of a tenant's open jobs, all told
    models: str = ""  # model names or specs the API accepts, comma-separated; empty: built-in
    preprocess_steps: str = ""  # preprocessing steps tenants may name (api/preprocess.py)

    def problems(self) -> list[str]:
        found = _at_least_one(self, ("max_page", "max_items", "open_queues", "max_models",
                                     "max_open_jobs", "max_open_items"), "API_")
        public = urlsplit(self.public_url)
        if self.public_url and (public.scheme not in ("http", "https") or not public.netloc
                                or public.query or public.fragment):
            found.append(f"{PREFIX}API_PUBLIC_URL={self.public_url!r}: expected "
                         "http(s)://host[:port][/path], how clients reach the API")
        return found


@dataclass(frozen=True, kw_only=True)
class NotifySettings:
    """Completion notifications (issue 17), read from ``GPUFLEET_NOTIFY_<NAME>``."""

    allow_http: int = 0  # 1: webhooks over plain http (local testing)
    allow_private: int = 0  # 1: webhooks to loopback, private, link-local addresses (testing)
    timeout_s: float = 10.0  # one delivery attempt, connecting and answering
    max_attempts: int = 10  # then the event is failed, with its last error in the log
    backoff_base_s: float = 5.0  # retry n waits a random time up to base * 2**n (full jitter)
    backoff_max_s: float = 3600.0
    batch: int = 100  # outbox rows a dispatcher pass takes at a time
    concurrency: int = 8  # deliveries at once (a slow receiver holds up only its own)

    def problems(self) -> list[str]:
        found = _at_least_one(self, ("max_attempts", "batch", "concurrency"), "NOTIFY_")
        found += [f"{PREFIX}NOTIFY_{name.upper()} must be 0 or 1"
                  for name in ("allow_http", "allow_private") if getattr(self, name) not in (0, 1)]
        if self.timeout_s <= 0:
            found.append(f"{PREFIX}NOTIFY_TIMEOUT_S must be positive")
        return found


# Each section, and the prefix its names take after GPUFLEET_.
SECTIONS: dict[str, tuple[type[Any], str]] = {
    "tasks": (TaskSettings, ""),
    "worker": (WorkerSettings, ""),
    "fleet": (FleetSettings, ""),
    "storage": (StorageSettings, ""),
    "server": (ServerSettings, "API_"),
    "notify": (NotifySettings, "NOTIFY_"),
}


@dataclass(frozen=True, kw_only=True)
class Settings:
    # Where the embedded state lives: buckets, SQLite files, logs.
    home: Path = field(default_factory=_default_home)
    # Backends by URL; empty means "the embedded default under home".
    queue: str = ""
    db: str = ""
    input: str = ""
    output: str = ""
    model: str = "efficientnet-lite0"
    model_cache: Path = field(default_factory=_default_model_cache)
    cache: str = "memory://"  # memory:// (one per process) or redis://host:6379/1
    # The HTTP API to talk to: the CLI's submit/status/results go through it when set.
    api: str = ""  # base URL of a gpufleet API, e.g. http://127.0.0.1:8000
    api_key: str = field(default="", repr=False)  # sent as Authorization: Bearer
    # Logs (logs.py): empty level means each command's own (info for long-running ones).
    log_level: str = ""  # debug, info, warning, error
    log_format: str = "auto"  # auto (Rich on a terminal, JSON lines elsewhere), json, text
    # The sections.
    tasks: TaskSettings = field(default_factory=TaskSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)

    def __post_init__(self) -> None:
        home = self.home.expanduser().resolve()
        object.__setattr__(self, "home", home)
        defaults = {
            "queue": f"sqlite:///{home / 'queue.db'}",
            "db": f"sqlite:///{home / 'index.db'}",
            "input": (home / "buckets" / "input").as_uri() + "/",
            "output": (home / "buckets" / "results").as_uri() + "/",
        }
        for name, value in defaults.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)
        problems = [line for name in SECTIONS for line in getattr(self, name).problems()]
        if self.log_level not in ("", *LEVELS):
            problems.append(f"{PREFIX}LOG_LEVEL={self.log_level!r}: expected one of "
                            + ", ".join(LEVELS))
        if self.log_format not in FORMATS:
            problems.append(f"{PREFIX}LOG_FORMAT={self.log_format!r}: expected one of "
                            + ", ".join(FORMATS))
        if self.cache.split("://", 1)[0] not in ("memory", "redis", "rediss"):
            problems.append(f"{PREFIX}CACHE={self.cache!r}: expected memory:// or "
                            "redis://host:6379/1")
        if problems:
            raise ConfigError("\n".join(problems))  # every problem at once, one line each

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        names = _names()
        top: dict[str, Any] = {}
        sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        problems = []
        for key, raw in env.items():
            if not key.startswith(PREFIX):
                continue
            if key not in names:
                problems.append(_unknown(key, names))
                continue
            section, f = names[key]
            try:
                value = _coerce(key, raw, f)
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            (sections[section] if section else top)[f.name] = value
        if problems:
            raise ConfigError("\n".join(problems))  # every problem at once, one line each
        return cls(**top, **{name: SECTIONS[name][0](**values)
                             for name, values in sections.items()})


def _names() -> dict[str, tuple[str | None, dataclasses.Field[Any]]]:
    """Every GPUFLEET_* name: its section (None: the top level) and its field."""
    found: dict[str, tuple[str | None, dataclasses.Field[Any]]] = {
        PREFIX + f.name.upper(): (None, f) for f in fields(Settings) if f.name not in SECTIONS}
    for name, (kind, prefix) in SECTIONS.items():
        for f in fields(kind):
            found[PREFIX + prefix + f.name.upper()] = (name, f)
    return found


def _unknown(key: str, names: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key.upper(), list(names), n=1, cutoff=0.75)
    if close:
        return f"unknown setting {key}: did you mean {close[0]}?"
    return f"unknown setting {key}; known: " + ", ".join(names)


def _coerce(key: str, raw: str, f: dataclasses.Field[Any]) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        noun = "an integer" if kind == "int" else "a number"
        raise ConfigError(f"{key}={raw!r} is not {noun}") from None
    if kind == "Path":
        return Path(raw)
    return raw
