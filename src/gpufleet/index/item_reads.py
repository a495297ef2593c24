"""Items read with their tags, as ``domain.Item``: the one read the index, the CLI and the
API share, whatever selects the rows (a page of a job, a tag search, one key)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, or_, select

from gpufleet.domain import Item, ItemStatus, Tag
from gpufleet.index.schema import tags

_KEYS_PER_STATEMENT = 500  # keys in one IN (...): well under every driver's parameter limit


def read_items(conn: Connection, query: Any) -> list[Item]:
    """The items rows ``query`` selects (from ``items``, in its order), each with its tags:
    one statement for the rows, then one per job (and few hundred keys) for their tags."""
    rows = list(conn.execute(query).mappings())
    by_job: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_job[r["job_id"]].append(r["key"])
    found: dict[tuple[str, str], list[Tag]] = defaultdict(list)
    for job_id, keys in by_job.items():
        for start in range(0, len(keys), _KEYS_PER_STATEMENT):
            chunk = keys[start:start + _KEYS_PER_STATEMENT]
            for t in conn.execute(select(tags.c.key, tags.c.tag_id, tags.c.label, tags.c.score)
                                  .where(tags.c.job_id == job_id, tags.c.key.in_(chunk))
                                  .order_by(tags.c.key, tags.c.rank)):
                found[job_id, t.key].append(Tag(t.tag_id, t.label, t.score))
    return [Item(job=r["job_id"], key=r["key"], status=ItemStatus(r["status"]),
                 tags=tuple(found.get((r["job_id"], r["key"]), ())), error=r["error"],
                 attempts=r["attempts"], worker=r["worker"], finished_at=r["finished_at"])
            for r in rows]


def tag_conditions(tag: str | None, min_score: float | None = None) -> list[Any]:
    """Conditions on one tags row: it is ``tag`` (its label in any case, an index lookup on
    the stored lower-cased label, or its id), scoring at least ``min_score``."""
    conditions: list[Any] = []
    if tag is not None:
        conditions.append(or_(tags.c.label_lower == tag.lower(), tags.c.tag_id == tag))
    if min_score is not None:
        conditions.append(tags.c.score >= min_score)
    return conditions
