"""The metadata index: jobs, items, tags and workers, in SQLite or PostgreSQL."""

from gpufleet.index.repo import Index, WorkerInfo

__all__ = ["Index", "WorkerInfo"]
