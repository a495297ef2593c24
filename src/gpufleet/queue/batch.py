"""Acking several tasks in one request where a backend can: once, above the backends.

A backend that can settle many leases in one round trip is ``BatchAcking``;
any other is acked one lease at a time. Same answers either way: True where
the lease held.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpufleet.queue.base import BatchAcking, Lease, TaskQueue


def ack_many(queue: TaskQueue, leases: Sequence[Lease]) -> list[bool]:
    if isinstance(queue, BatchAcking):
        return queue.ack_batch(leases)
    return [queue.ack(lease) for lease in leases]
