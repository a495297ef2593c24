"""Nack with exponential backoff, and dead-lettering after max_receives: once, above backends."""

from __future__ import annotations

from dataclasses import dataclass

from gpufleet.queue.base import Lease, TaskQueue


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    max_receives: int = 5
    base_s: float = 2.0
    max_s: float = 300.0

    def delay_s(self, receives: int) -> float:
        return min(self.max_s, self.base_s * 2.0 ** max(0, receives - 1))


def nack(queue: TaskQueue, lease: Lease, *, error: str, backoff: Backoff) -> bool:
    """Retry the task later, or dead-letter it if it has had its receives. True if dead."""
    if lease.receives >= backoff.max_receives:
        queue.dead_letter(lease, error=error)
        return True
    queue.release(lease, delay_s=backoff.delay_s(lease.receives), error=error)
    return False
