"""The queue interface every backend implements, its optional capabilities, and the URL registry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable
from urllib.parse import urlsplit

from gpufleet.redact import redact_url
from gpufleet.registry import Registry


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


@runtime_checkable
class BatchAcking(Protocol):
    """A backend that settles many leases in one round trip (SQS DeleteMessageBatch,
    one pipelined Redis call). Answers as ``ack`` would, one bool per lease."""

    def ack_batch(self, leases: Sequence[Lease]) -> list[bool]: ...


class QueueBase:
    """What every backend repeats: a repr naming where it is, and use as a context manager."""

    name: str
    where: str  # host:port or path, never a password

    def close(self) -> None:
        """Release connections; the default holds none."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r}, name={self.name!r})"


QUEUES = Registry("queue URL", {
    "sqlite": "gpufleet.queue.sqlite:SqliteQueue.from_url",
    "redis": "gpufleet.queue.redis:RedisQueue",
    "rediss": "gpufleet.queue.redis:RedisQueue",
    "sqs": "gpufleet.queue.sqs:SqsQueue",
}, expected="sqlite:///path, redis://host:port/db, sqs://QUEUE_NAME or an https:// SQS "
            "queue URL")


def open_queue(url: str, *, name: str) -> TaskQueue:
    """Open the queue called name on the backend that url names."""
    parts = urlsplit(url)
    # An SQS queue may be named by its https:// queue URL.
    scheme = "sqs" if parts.scheme == "https" and "sqs." in (parts.hostname or "") \
        else parts.scheme
    opener = QUEUES.load(scheme, shown=redact_url(url))
    queue: TaskQueue = opener(url, name=name)
    return queue
