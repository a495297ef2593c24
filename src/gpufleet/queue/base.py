"""The queue interface every backend implements, and the URL registry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from gpufleet.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Lease:
    """A received task, invisible to other consumers until it expires or is settled."""

    id: str
    body: str
    receives: int  # how many times this task has been delivered, this time included
    token: str  # proves this consumer still holds the lease


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    body: str
    receives: int
    error: str
    died_at: float


@dataclass(frozen=True, slots=True)
class QueueDepth:
    queued: int  # visible now or after a backoff delay
    in_flight: int  # leased
    dead: int


class TaskQueue(Protocol):
    """One named queue. Every method is safe from several processes at once."""

    supports_delay: bool
    max_message_bytes: int

    def enqueue(self, bodies: Sequence[str], *, delay_s: float = 0.0) -> None: ...

    def receive(self, max_tasks: int, *, visibility_timeout_s: float,
                wait_s: float = 0.0) -> list[Lease]:
        """Lease up to max_tasks visible tasks, possibly none.

        With wait_s > 0 a backend that can wait for work on the server (SQS long
        polling, a blocking Redis read) may wait that long when nothing is visible;
        others return at once.
        """
        ...

    def extend(self, lease: Lease, *, visibility_timeout_s: float) -> bool:
        """Heartbeat: the lease now ends visibility_timeout_s from now. False if it was lost."""
        ...

    def ack(self, lease: Lease) -> bool:
        """Delete the task. False if the lease was lost (the task may run again)."""
        ...

    def release(self, lease: Lease, *, delay_s: float = 0.0, error: str | None = None) -> bool:
        """Give the task back, visible again after delay_s (nack, or drain with 0)."""
        ...

    def dead_letter(self, lease: Lease, *, error: str) -> bool:
        """Move the task to the dead-letter queue with its last error."""
        ...

    def dead_letters(self) -> list[DeadLetter]: ...

    def redrive(self) -> int:
        """Move every dead letter back to the queue, receive count reset. Returns how many."""
        ...

    def depth(self) -> QueueDepth: ...

    def close(self) -> None: ...


def open_queue(url: str, *, name: str) -> TaskQueue:
    """Open the queue called name on the backend that url names."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        from gpufleet.queue.sqlite import SqliteQueue

        return SqliteQueue(parts.path, name=name)
    if parts.scheme in ("redis", "rediss"):
        from gpufleet.queue.redis import RedisQueue

        return RedisQueue(url, name=name)
    if parts.scheme == "sqs" or (parts.scheme == "https" and "sqs." in (parts.hostname or "")):
        from gpufleet.queue.sqs import SqsQueue

        return SqsQueue(url, name=name)
    raise ConfigError(f"unsupported queue URL {url!r}: expected sqlite:///path, "
                      "redis://host:port/db, sqs://QUEUE_NAME or an https:// SQS queue URL")
