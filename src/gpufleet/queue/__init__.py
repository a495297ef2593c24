"""Task queues: at-least-once delivery with leases, backoff and a dead-letter queue."""

from gpufleet.queue.base import DeadLetter, Lease, QueueDepth, TaskQueue, open_queue
from gpufleet.queue.retry import Backoff, nack

__all__ = ["Backoff", "DeadLetter", "Lease", "QueueDepth", "TaskQueue", "nack", "open_queue"]
