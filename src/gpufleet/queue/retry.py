"""Nack with jittered exponential backoff, and dead-lettering after max_receives: once,
above backends."""

from __future__ import annotations

from dataclasses import dataclass

from gpufleet.jitter import equal_jitter
from gpufleet.queue.base import Lease, TaskQueue


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    max_receives: int = 5
    base_s: float = 2.0
    max_s: float = 300.0
    jitter: bool = True  # off only where a test must know the exact delay

    def ceiling_s(self, receives: int) -> float:
        """The longest wait after the receives-th delivery: base * 2^(receives-1), capped."""
        return min(self.max_s, self.base_s * 2.0 ** max(0, receives - 1))

    def delay_s(self, receives: int) -> float:
        """The wait before the next delivery: in the upper half of the ceiling, at random,
        so that tasks that failed together (an outage) come back spread out."""
        ceiling = self.ceiling_s(receives)
        return equal_jitter(ceiling) if self.jitter else ceiling


def nack(queue: TaskQueue, lease: Lease, *, error: str, backoff: Backoff) -> bool:
    """Retry the task later, or dead-letter it if it has had its receives. True if dead."""
    if lease.receives >= backoff.max_receives:
        queue.dead_letter(lease, error=error)
        return True
    queue.release(lease, delay_s=backoff.delay_s(lease.receives), error=error)
    return False
