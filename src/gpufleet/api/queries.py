"""Tenant-scoped reads on the index's tables, and cancellation.

Every read that names a job goes through ``owner``: a job of another tenant
is reported exactly like a job that does not exist.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, or_, select

from gpufleet.domain import Item
from gpufleet.errors import GpufleetError, JobNotFound
from gpufleet.index import Index
from gpufleet.index.item_reads import read_items, tag_conditions
from gpufleet.index.schema import items, jobs, tags
from gpufleet.jsonsafe import loads

_OWNERS_KEPT = 100_000


@dataclass(frozen=True, slots=True)
class Owner:
    tenant: str
    output: str
    model: str
    results: str = "objects"  # or "shards": no object per item (worker/result_shards.py)


@dataclass(frozen=True, slots=True)
class Timing:
    finished: int  # items with an outcome and a finish time
    first_started: float | None
    last_finished: float | None


class InvalidCursor(GpufleetError):
    """A page cursor that is not one this API handed out (the API answers 400)."""


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_cursor(text: str | None, *, parts: int = 1) -> Any:
    """None, or the string (parts=1) or list of strings a cursor holds; else InvalidCursor."""
    if text is None:
        return None
    try:
        value = loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), max_depth=2)
    except (binascii.Error, ValueError) as exc:  # (JsonRefused and bad UTF-8 included)
        raise InvalidCursor(f"invalid cursor {text[:40]!r}") from exc
    if parts == 1 and isinstance(value, str):
        return value
    if (parts > 1 and isinstance(value, list) and len(value) == parts
            and all(isinstance(v, str) for v in value)):
        return value
    raise InvalidCursor(f"invalid cursor {text[:40]!r}")


class Reads:
    def __init__(self, index: Index) -> None:
        self.index = index
        # A job's tenant, output and model never change: remember them (bounded).
        self._owners: OrderedDict[str, Owner] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, job_id: str) -> Owner | None:
        """Who owns a job, whoever asks (for invalidation and the DLQ); None if no such job."""
        with self._lock:
            found = self._owners.get(job_id)
        if found is not None:
            return found
        with self.index.transaction() as conn:
            row = conn.execute(select(jobs.c.tenant, jobs.c.output, jobs.c.model,
                                      jobs.c.results).where(jobs.c.id == job_id)).first()
        if row is None:
            return None
        found = Owner(tenant=row.tenant, output=row.output, model=row.model,
                      results=row.results or "objects")
        with self._lock:
            self._owners[job_id] = found
            while len(self._owners) > _OWNERS_KEPT:
                self._owners.popitem(last=False)
        return found

    def owner(self, tenant: str, job_id: str) -> Owner:
        """The job's owner if it is tenant; JobNotFound otherwise, whoever owns it."""
        found = self.lookup(job_id)
        if found is None or found.tenant != tenant:
            raise JobNotFound(f"no job {job_id!r}")
        return found

    def job_ids(self, tenant: str, *, before: str | None, limit: int) -> list[str]:
        """The tenant's job ids, newest first (ids sort by creation time)."""
        query = select(jobs.c.id).where(jobs.c.tenant == tenant)
        if before is not None:
            query = query.where(jobs.c.id < before)
        with self.index.transaction() as conn:
            return list(conn.execute(query.order_by(jobs.c.id.desc()).limit(limit)).scalars())

    def tenant_jobs(self, tenant: str, job_ids: Sequence[str]) -> set[str]:
        with self.index.transaction() as conn:
            return set(conn.execute(select(jobs.c.id).where(
                jobs.c.tenant == tenant, jobs.c.id.in_(list(job_ids)))).scalars())

    def timing(self, job_id: str) -> Timing:
        with self.index.transaction() as conn:
            row = conn.execute(select(
                func.count(items.c.finished_at), func.min(items.c.started_at),
                func.max(items.c.finished_at)).where(
                    items.c.job_id == job_id, items.c.status != "pending")).one()
        return Timing(finished=row[0], first_started=row[1], last_finished=row[2])

    def item(self, job_id: str, key: str) -> Item | None:
        page = self._items(select(items).where(items.c.job_id == job_id, items.c.key == key))
        return page[0] if page else None

    def items(self, job_id: str, *, status: str | None, tag: str | None,
              min_score: float | None, after: str | None, limit: int) -> list[Item]:
        """One page of a job's items in key order, after the key ``after``."""
        query = select(items).where(items.c.job_id == job_id)
        if status is not None:
            query = query.where(items.c.status == status)
        if tag is not None or min_score is not None:
            query = query.where(exists().where(
                tags.c.job_id == items.c.job_id, tags.c.key == items.c.key,
                *tag_conditions(tag, min_score)))
        if after is not None:
            query = query.where(items.c.key > after)
        return self._items(query.order_by(items.c.key).limit(limit))

    def search(self, tenant: str, *, tag: str, min_score: float | None,
               after: tuple[str, str] | None, limit: int) -> list[tuple[Item, float]]:
        """Items of the tenant's jobs tagged ``tag``, by (job, key), with the matching score."""
        query = (select(tags.c.job_id, tags.c.key, func.max(tags.c.score).label("score"))
                 .join(jobs, jobs.c.id == tags.c.job_id)
                 .where(jobs.c.tenant == tenant, *tag_conditions(tag, min_score))
                 .group_by(tags.c.job_id, tags.c.key)
                 .order_by(tags.c.job_id, tags.c.key).limit(limit))
        if after is not None:
            query = query.where(or_(tags.c.job_id > after[0],
                                    and_(tags.c.job_id == after[0], tags.c.key > after[1])))
        with self.index.transaction() as conn:
            hits = list(conn.execute(query))
        by_job: dict[str, list[str]] = defaultdict(list)
        for hit in hits:
            by_job[hit.job_id].append(hit.key)
        found: dict[tuple[str, str], Item] = {}
        for job_id, keys in by_job.items():
            for item in self._items(select(items).where(items.c.job_id == job_id,
                                                        items.c.key.in_(keys))):
                found[item.job, item.key] = item
        return [(found[h.job_id, h.key], h.score) for h in hits if (h.job_id, h.key) in found]

    def _items(self, query: Any) -> list[Item]:
        with self.index.transaction() as conn:
            return read_items(conn, query)
