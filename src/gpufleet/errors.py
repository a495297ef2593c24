"""Every error gpufleet raises on purpose derives from one root.

    GpufleetError
    ├── ConfigError            a bad setting, URL or model spec
    ├── ManifestError          a manifest refused: names the line or item and the reason
    ├── JobNotFound
    ├── JobFinished            a finished job cannot be cancelled
    ├── TaskTooLarge           a task body over the queue's message limit
    ├── ItemError              one item cannot be processed; the rest of the job goes on
    │   ├── ObjectMissing      the input object does not exist
    │   ├── ObjectTooLarge     the input object is over the size limit (and was not read)
    │   ├── ObjectRejected     the store can never hold this key (too long, a path conflict)
    │   ├── ImageError         not a photo, corrupt, truncated, too many pixels
    │   └── ItemSkipped        a preprocessing filter left it out: skipped, not failed
    ├── Unavailable            transient: retry the task later (nack with backoff)
    │   ├── StoreUnavailable
    │   ├── QueueUnavailable
    │   └── IndexUnavailable
    └── ModelError             a model failed to bootstrap or to run
        └── DeviceLost         its device can run nothing more: the worker hands back and exits

Driver exceptions are translated where a backend calls its driver
(``raise QueueUnavailable(...) from exc``), so callers only ever catch these.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeviceLost",
    "GpufleetError",
    "ImageError",
    "IndexUnavailable",
    "ItemError",
    "ItemSkipped",
    "JobFinished",
    "JobNotFound",
    "ManifestError",
    "ModelError",
    "ObjectMissing",
    "ObjectRejected",
    "ObjectTooLarge",
    "QueueUnavailable",
    "StoreUnavailable",
    "TaskTooLarge",
    "Unavailable",
]


class GpufleetError(Exception):
    """Root of every error gpufleet raises on purpose."""


class ConfigError(GpufleetError):
    """A setting, URL or model spec is invalid."""


class ManifestError(GpufleetError):
    """A manifest was refused; nothing was enqueued for it."""


class JobNotFound(GpufleetError):
    """No job has this id."""


class JobFinished(GpufleetError):
    """The job has ended (succeeded, partial or failed): it cannot be cancelled."""


class TaskTooLarge(GpufleetError):
    """A task is over the queue's message size limit: use a smaller chunk size."""


class ItemError(GpufleetError):
    """One item failed for a reason of its own (its input), not the system's."""


class ObjectMissing(ItemError):
    """The input object does not exist."""


class ObjectTooLarge(ItemError):
    """The object is over the size limit; the store refused it before reading its body."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"object is {size:,} bytes, over the limit of {limit:,}")
        self.size, self.limit = size, limit

    def __reduce__(self) -> tuple[type[ObjectTooLarge], tuple[int, int]]:
        return type(self), (self.size, self.limit)


class ObjectRejected(ItemError):
    """The store can never write this key, however often it is retried."""


class ImageError(ItemError):
    """The object is not a photo we accept, or it is corrupt or too large."""


class ItemSkipped(ItemError):
    """A preprocessing step left the item out on purpose (too small, say): its outcome is
    ``skipped`` with this reason, not a failure."""


class Unavailable(GpufleetError):
    """A service is unreachable; the work should be retried later."""


class StoreUnavailable(Unavailable):
    """The object store could not be reached or refused the request."""


class QueueUnavailable(Unavailable):
    """The task queue could not be reached."""


class IndexUnavailable(Unavailable):
    """The metadata index could not be reached."""


class ModelError(GpufleetError):
    """A model failed to bootstrap or to run."""


class DeviceLost(ModelError):
    """The model's device can run nothing more: a GPU fallen off the bus, or a CUDA context
    that a fault (an illegal address, an uncorrectable ECC error) left unusable, which only
    a new process clears. A worker whose tagger raises it from ``infer`` hands its tasks
    back and exits with an error, for its supervisor to start another."""
