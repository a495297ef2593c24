"""Acking several tasks in one request where a backend can: once, above the backends.

A backend that can settle many leases in one round trip (SQS DeleteMessageBatch,
a pipelined Redis call) has ``ack_batch(leases) -> list[bool]``; any other is
acked one lease at a time. Same answers either way: True where the lease held.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpufleet.queue.base import Lease, TaskQueue


def ack_many(queue: TaskQueue, leases: Sequence[Lease]) -> list[bool]:
    batch = getattr(queue, "ack_batch", None)
    if callable(batch):
        return [bool(ok) for ok in batch(leases)]
    return [queue.ack(lease) for lease in leases]
