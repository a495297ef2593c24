"""Event-triggered jobs: a manifest that lands in an inbox becomes a job, no human involved.

Inbox locations:

- ``file:///dir/manifests/``: the controller looks at the directory on every
  tick. A manifest is taken once it is complete: its last write is at least
  ``settle_s`` (2 s) old and it did not change while it was read. Names
  starting with ``.`` or ending in ``.tmp``/``.part``/``~`` are never taken, so
  a writer may also write elsewhere and rename.
- ``s3://bucket/manifests/``: the bucket's event notifications go to an SQS
  queue that the controller consumes (see ``inbox_s3``).

Each manifest object version (its key and S3 version id or ETag; locally the
SHA-256 of its content) is recorded in the index's ``manifests`` table, as
accepted with its job or refused with the reason, and never taken again: the
same object notified twice makes one job, a bad manifest is logged once and
not retried forever. The job id is derived from the object version too, so a
controller that dies between creating the job and recording the manifest
finds the job instead of making a second one. Only transient trouble (index,
queue or store unreachable) leaves a manifest to be tried again.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from gpufleet.config import Settings
from gpufleet.domain import Job
from gpufleet.errors import ConfigError, GpufleetError, JobNotFound, ManifestError, Unavailable
from gpufleet.index import Index
from gpufleet.index.fleet import FleetRecords, manifest_id
from gpufleet.jobs import enqueue_job
from gpufleet.manifest import FORMATS, ManifestStream

log = logging.getLogger(__name__)
_SKIPPED_SUFFIXES = (".tmp", ".part", ".partial", "~")


@dataclass(frozen=True, slots=True)
class Arrival:
    """One manifest object version that landed in an inbox."""

    key: str  # relative to the inbox
    version: str  # S3 version id or ETag; locally the content's SHA-256
    at: float  # when it landed (wall clock)
    load: Callable[[], bytes]
    token: Any = None  # the inbox's own handle (a file's stat, an SQS message)


class Inbox(Protocol):
    uri: str

    def arrivals(self) -> list[Arrival]:
        """Complete manifests seen since the last call and not yet settled."""
        ...

    def settle(self, arrival: Arrival, *, handled: bool) -> None:
        """handled: accepted or refused for good; else it is offered again later."""
        ...

    def default_input(self, key: str) -> str:
        """Where a manifest's keys live when it does not say: its own folder."""
        ...

    def close(self) -> None: ...


def open_inbox(uri: str, *, settle_s: float = 2.0) -> Inbox:
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return DirectoryInbox(Path(unquote(parts.path) if parts.scheme else uri),
                              settle_s=settle_s)
    if parts.scheme == "s3":
        from gpufleet.scaler.inbox_s3 import S3Inbox

        return S3Inbox.from_uri(uri)
    raise ConfigError(f"unsupported inbox {uri!r}: expected file:///dir/ or s3://bucket/prefix/")


class DirectoryInbox:
    def __init__(self, root: Path, *, settle_s: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = root.expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"inbox {self.root}: cannot create it: {exc.strerror}") from None
        self.uri = self.root.as_uri() + "/"
        self.settle_s, self.clock = settle_s, clock
        self._settled: dict[str, tuple[int, int]] = {}  # key -> (size, mtime) taken

    def arrivals(self) -> list[Arrival]:
        found = []
        now = self.clock()
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if any(part.startswith(".") for part in key.split("/")) or \
                    key.endswith(_SKIPPED_SUFFIXES):
                continue
            try:
                if not path.is_file():
                    continue
                before = path.stat()
                signature = (before.st_size, before.st_mtime_ns)
                if self._settled.get(key) == signature or \
                        now - before.st_mtime < self.settle_s:
                    continue  # taken already, or still being written
                data = path.read_bytes()
                after = path.stat()
            except OSError:
                continue  # removed or replaced meanwhile: the next look sees what is there
            if (after.st_size, after.st_mtime_ns) != signature or len(data) != after.st_size:
                continue
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            found.append(Arrival(key, digest, before.st_mtime, functools.partial(bytes, data),
                                 token=signature))
        return found

    def settle(self, arrival: Arrival, *, handled: bool) -> None:
        if handled:
            self._settled[arrival.key] = arrival.token

    def default_input(self, key: str) -> str:
        return (self.root / key).parent.as_uri() + "/"

    def close(self) -> None:
        pass


def job_id_for(inbox: str, arrival: Arrival) -> str:
    """The same object version always makes the same job id (sortable like new_job_id)."""
    stamp = time.strftime("%Y%m%d-%H%M%S-", time.gmtime(arrival.at))
    return stamp + manifest_id(inbox, arrival.key, arrival.version)[:6]


class Ingest:
    """Turns what lands in an inbox into jobs of one model."""

    def __init__(self, settings: Settings, index: Index, inbox: Inbox, *, model: str) -> None:
        self.settings, self.index, self.inbox, self.model = settings, index, inbox, model
        self.records = FleetRecords(index)

    def poll(self) -> list[str]:
        """Take every complete manifest; returns the ids of the jobs made."""
        made = []
        try:
            arrivals = self.inbox.arrivals()
        except Unavailable as exc:
            log.warning("inbox %s: %s; trying again", self.inbox.uri, exc)
            return []
        for arrival in arrivals:
            try:
                job_id = self._take(arrival)
            except Unavailable as exc:
                log.warning("inbox %s: %s: %s; trying again", self.inbox.uri, arrival.key, exc)
                self.inbox.settle(arrival, handled=False)
                continue
            self.inbox.settle(arrival, handled=True)
            if job_id:
                made.append(job_id)
        return made

    def _take(self, arrival: Arrival) -> str | None:
        uri = self.inbox.uri
        seen = self.records.manifest(uri, arrival.key, arrival.version)
        if seen is not None:
            log.debug("inbox %s: %s %s seen already (%s)", uri, arrival.key, arrival.version,
                      seen.state)
            return None
        job_id = job_id_for(uri, arrival)
        try:
            self.index.job(job_id)
        except JobNotFound:
            pass
        else:  # made by a controller that died before recording the manifest
            self.records.record_manifest(uri, arrival.key, arrival.version, state="accepted",
                                         job_id=job_id)
            return None
        try:
            job = self._enqueue(arrival, job_id)
        except Unavailable:
            raise
        except GpufleetError as exc:
            self._refuse(arrival, str(exc))
            return None
        except Exception as exc:  # a bug must not make the inbox retry this forever
            log.exception("inbox %s: unexpected error on %s", uri, arrival.key)
            self._refuse(arrival, f"unexpected error: {exc!r}")
            return None
        self.records.record_manifest(uri, arrival.key, arrival.version, state="accepted",
                                     job_id=job.id)
        log.info("inbox %s: %s became job %s (%d item(s)%s)", uri, arrival.key, job.id,
                 job.counts.total, f", deadline {job.deadline_s:.0f} s" if job.deadline_s else "")
        return job.id

    def _enqueue(self, arrival: Arrival, job_id: str) -> Job:
        suffix = "." + arrival.key.rsplit(".", 1)[-1].lower() if "." in arrival.key else ""
        fmt = FORMATS.get(suffix)
        if fmt is None:
            raise ManifestError(f"{arrival.key}: unknown manifest type; expected one of "
                                + ", ".join(FORMATS))
        manifest = ManifestStream(io.BytesIO(arrival.load()), fmt=fmt, name=arrival.key)
        return enqueue_job(self.settings, self.index, job_id, manifest.keys(),
                           input=manifest.input or self.inbox.default_input(arrival.key),
                           output=self.settings.output, model=self.model,
                           deadline_s=manifest.deadline_s, priority=manifest.priority or 0)

    def _refuse(self, arrival: Arrival, reason: str) -> None:
        log.error("inbox %s: manifest %s refused, no job made: %s", self.inbox.uri,
                  arrival.key, reason)
        self.records.record_manifest(self.inbox.uri, arrival.key, arrival.version,
                                     state="refused", reason=reason)
