"""Turning an arrival into a job: validated, recorded once per object version, enqueued."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from urllib.parse import urlsplit

from gpufleet.config import Settings
from gpufleet.domain import Job
from gpufleet.errors import GpufleetError, JobNotFound, Unavailable
from gpufleet.index import Index
from gpufleet.index.fleet_records import FleetRecords, manifest_id
from gpufleet.intake.inbox import Arrival, Inbox
from gpufleet.inventory import is_inventory_part
from gpufleet.jobs import JobRequest, create_job
from gpufleet.manifest import ManifestStream, manifest_format
from gpufleet.sources import files_beside, files_in_buckets

log = logging.getLogger(__name__)


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
        if is_inventory_part(arrival.key):  # read through its delivery's manifest.json
            log.debug("inbox %s: %s is part of an S3 Inventory delivery", uri, arrival.key)
            return None
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
        fmt = manifest_format(arrival.key)
        read_file = (files_in_buckets(self.settings) if self.inbox.uri.startswith("s3://")
                     else files_beside(Path(urlsplit(self.inbox.default_input(arrival.key)).path)))
        manifest = ManifestStream(io.BytesIO(arrival.load()), fmt=fmt, name=arrival.key,
                                  read_file=read_file)
        return create_job(self.settings, self.index, JobRequest(
            manifest=manifest, model=self.model, job_id=job_id,
            default_input=self.inbox.default_input(arrival.key)))

    def _refuse(self, arrival: Arrival, reason: str) -> None:
        log.error("inbox %s: manifest %s refused, no job made: %s", self.inbox.uri,
                  arrival.key, reason)
        self.records.record_manifest(self.inbox.uri, arrival.key, arrival.version,
                                     state="refused", reason=reason)
