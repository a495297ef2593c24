"""An event inbox: the manifests one S3 event document names, for a trigger that is handed it.

A Lambda function invoked by a bucket notification is given the event itself, not a
queue to read; this inbox holds the ``ObjectCreated`` records of one bucket under one
prefix, read as ``intake.s3`` reads them from SQS (same keys, same versions, the object
read at that exact version), so ``Ingest`` records each version once whichever way it
arrived: the same manifest notified twice, or through both paths, makes one job.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpufleet import aws
from gpufleet.intake.inbox import Arrival
from gpufleet.intake.s3 import Event, parse_events, read_version


def buckets_in(document: Mapping[str, Any]) -> list[str]:
    """The buckets an S3 event document has records of, in order of first mention."""
    found: list[str] = []
    for record in document.get("Records") or []:
        try:
            name = record["s3"]["bucket"]["name"]
        except (KeyError, TypeError):
            continue
        if name not in found:
            found.append(name)
    return found


@dataclass
class EventInbox:
    """The ObjectCreated records of one bucket in one event document, under prefix."""

    bucket: str
    prefix: str
    events: list[Event]
    input: str | None = None  # where a manifest's keys live when it does not say
    s3: Any = None
    outside: list[str] = field(default_factory=list)  # keys not under the prefix
    unsettled: list[str] = field(default_factory=list)  # keys to try again (transient)

    @classmethod
    def from_event(cls, document: Mapping[str, Any], bucket: str, *, prefix: str = "",
                   input: str | None = None) -> EventInbox:
        events = parse_events(json.dumps(document), bucket) or []
        inside = [e for e in events if e.key.startswith(prefix) and not e.key.endswith("/")]
        return cls(bucket, prefix, inside, input=input,
                   outside=[e.key for e in events if e not in inside])

    def __post_init__(self) -> None:
        self.uri = f"s3://{self.bucket}/{self.prefix}"  # the same inbox as intake.s3's

    def arrivals(self) -> list[Arrival]:
        return [Arrival(e.key[len(self.prefix):], e.version, e.at,
                        functools.partial(self._read, e), token=e) for e in self.events]

    def _read(self, event: Event) -> bytes:
        if self.s3 is None:
            self.s3 = aws.client("s3")
        return read_version(self.s3, self.bucket, event, inbox=self.uri)

    def settle(self, arrival: Arrival, *, handled: bool) -> None:
        if not handled:
            self.unsettled.append(arrival.key)

    def default_input(self, key: str) -> str:
        if self.input:
            return self.input
        folder = (self.prefix + key).rsplit("/", 1)[0] if "/" in self.prefix + key else ""
        return f"s3://{self.bucket}/{folder + '/' if folder else ''}"

    def close(self) -> None:
        pass
