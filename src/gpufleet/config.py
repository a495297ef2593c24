"""One Settings object, read from the environment (``GPUFLEET_*``) in one place.

URLs pick the backends: ``GPUFLEET_QUEUE=sqlite:///...``, ``GPUFLEET_DB=sqlite:///...``.
An unknown ``GPUFLEET_*`` key is refused (with the nearest known name), so a
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

from gpufleet.errors import ConfigError

PREFIX = "GPUFLEET_"


def _default_home() -> Path:
    return Path.home() / ".gpufleet"


def _default_model_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpufleet"


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
    # Tasks: items per queue message, lease, retries.
    chunk_size: int = 32
    visibility_timeout_s: float = 60.0
    max_receives: int = 5
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    # The sweeper (issue 11): a job whose pending items have no task anywhere, idle this long,
    # is enqueued again, at most max_requeues times; then its pending items fail.
    sweep_quiet_s: float = 60.0
    max_requeues: int = 3
    # Worker.
    fetch_concurrency: int = 8
    decode_threads: int = 0  # 0: one per core
    drain_grace_s: float = 120.0
    max_pixels: int = 120_000_000
    decode_budget_mb: int = 512  # decoded bytes in flight per worker; bigger images queue
    max_object_bytes: int = 64 * 1024 * 1024
    # Scale-out backends (issue 3): the cache; encryption of what gpufleet writes to S3.
    cache: str = "memory://"  # memory:// (one per process) or redis://host:6379/1
    sse: str = ""  # S3 server-side encryption of writes: AES256 or aws:kms; empty: the bucket's
    sse_kms_key_id: str = ""  # a KMS key id or ARN for aws:kms (implies aws:kms)
    # The fleet (issue 4): where a worker runs, how it hears of an interruption, what it costs.
    instance: str = ""  # the provider's id for this worker (set by the provider; EC2: asked)
    capacity: str = ""  # spot or on-demand; empty: asked of EC2 metadata, else on-demand
    imds_url: str = ""  # EC2 instance metadata, e.g. http://169.254.169.254; empty: not on EC2
    notice_file: str = ""  # a file whose appearance is an interruption notice (local)
    notice_poll_s: float = 5.0
    aws_asg: str = ""  # the Auto Scaling group the worker's instance belongs to
    aws_lifecycle_hook: str = ""  # completed by the worker after draining, when set
    spot_price_per_h: float = 0.2104  # per worker-hour (g4dn.xlarge), for cost estimates
    on_demand_price_per_h: float = 0.526
    target_drain_s: float = 1800.0  # a job without a deadline should be done this soon
    # The HTTP API (issue 5). The CLI's submit/status/results go through api when it is set.
    api: str = ""  # base URL of a gpufleet API, e.g. http://127.0.0.1:8000
    api_key: str = field(default="", repr=False)  # sent as Authorization: Bearer
    api_rate_per_s: float = 50.0  # requests per key per second (token bucket)
    api_burst: int = 100  # bucket size: a burst of this many is allowed
    api_max_page: int = 1000  # items per page, at most
    api_max_items: int = 1_000_000  # items per job submitted through the API
    api_max_body_bytes: int = 32 * 1024 * 1024
    api_url_ttl_s: float = 900.0  # signed download URLs; at most 7 days
    api_signing_key: str = field(default="", repr=False)  # empty: kept in $HOME/api-signing.key
    api_allow: str = ""  # client CIDRs, comma-separated; empty: any client
    api_deny: str = ""  # client CIDRs refused (wins over api_allow)
    api_trusted_proxies: str = ""  # CIDRs whose X-Forwarded-For is believed
    api_locations: str = ""  # tenant=location,...: more locations granted to a tenant
    api_request_timeout_s: float = 60.0  # a request's headers and body must arrive within it
    api_public_url: str = ""  # e.g. https://fleet.example.com: signed URLs start with it
    api_cache_ttl_s: float = 30.0  # how long finished results stay in the cache
    api_open_queues: int = 16  # queue handles the API keeps open (least recently used closed)
    api_max_models: int = 4  # distinct model specs among a tenant's open jobs
    api_max_open_jobs: int = 100  # a tenant's open jobs (not cancelled, an item pending)
    api_max_open_items: int = 2_000_000  # items of a tenant's open jobs, all told
    api_models: str = ""  # model names or specs the API accepts, comma-separated; empty: built-in

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
        problems = [f"{PREFIX}{name.upper()} must be at least 1"
                    for name in ("chunk_size", "max_receives", "fetch_concurrency",
                                 "max_pixels", "decode_budget_mb") if getattr(self, name) < 1]
        if self.visibility_timeout_s <= 0:
            problems.append(f"{PREFIX}VISIBILITY_TIMEOUT_S must be positive")
        if self.sse not in ("", "AES256", "aws:kms"):
            problems.append(f"{PREFIX}SSE={self.sse!r}: expected AES256 or aws:kms")
        if self.cache.split("://", 1)[0] not in ("memory", "redis", "rediss"):
            problems.append(f"{PREFIX}CACHE={self.cache!r}: expected memory:// or "
                            "redis://host:6379/1")
        if problems:
            raise ConfigError("\n".join(problems))  # every problem at once, one line each

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        problems = []
        for key, raw in env.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX):].lower()
            if name not in known:
                problems.append(_unknown(key, known))
                continue
            try:
                values[name] = _coerce(key, raw, known[name])
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("\n".join(problems))  # every problem at once, one line each
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _unknown(key: str, known: Mapping[str, Any]) -> str:
    names = [PREFIX + n.upper() for n in known]
    close = difflib.get_close_matches(key.upper(), names, n=1, cutoff=0.75)
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
