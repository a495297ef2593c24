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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from gpufleet.registry import Registry


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


INBOXES = Registry("inbox", {
    "": "gpufleet.intake.directory:DirectoryInbox.from_uri",
    "file": "gpufleet.intake.directory:DirectoryInbox.from_uri",
    "s3": "gpufleet.intake.s3:S3Inbox.from_uri",
}, expected="file:///dir/ or s3://bucket/prefix/")


def open_inbox(uri: str, *, settle_s: float = 2.0) -> Inbox:
    """The inbox at uri; settle_s: how old a local manifest's last write must be to take it."""
    opener = INBOXES.load(urlsplit(uri).scheme, shown=uri)
    inbox: Inbox = opener(uri, settle_s=settle_s)
    return inbox
