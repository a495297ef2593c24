"""What `gpufleet stream` keeps in the index: windows, the events in them, checkpoints.

A window's events are written, with the window marked open, before its job is made;
the window is marked enqueued once the job's tasks are on the queue, and only then are
its records acknowledged to the source. So a consumer that dies anywhere in between
finds, when it starts again, the open window (and makes its job, or finds it made) and,
when the source offers the same records again, their events already taken.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select, update

from gpufleet.index.repo import Index
from gpufleet.index.schema import stream_checkpoints, stream_events, stream_windows

_IN_CHUNK = 500  # ids per IN (...) list: well under every driver's parameter limit


@dataclass(frozen=True, slots=True)
class Rejection:
    event_id: str
    key: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class OpenWindow:
    id: str
    input: str


class StreamRecords:
    def __init__(self, index: Index) -> None:
        self.index = index

    def known(self, stream: str, event_ids: Iterable[str]) -> dict[str, str | None]:
        """Which of these events were seen before: event id -> its window (None: rejected)."""
        found: dict[str, str | None] = {}
        ids = iter(set(event_ids))
        with self.index.transaction() as conn:
            while chunk := list(itertools.islice(ids, _IN_CHUNK)):
                rows = conn.execute(select(stream_events.c.event_id, stream_events.c.window_id)
                                    .where(stream_events.c.stream == stream,
                                           stream_events.c.event_id.in_(chunk)))
                found.update({r.event_id: r.window_id for r in rows})
        return found

    def open_window(self, stream: str, window_id: str, *, input: str,
                    events: Sequence[tuple[str, str]]) -> int:
        """Record a window and its (event id, key) pairs, in one transaction; an event taken
        meanwhile by another consumer stays in its window. Returns the window's item count."""
        now = self.index.clock()
        ins = self.index._insert(stream_events).on_conflict_do_nothing(
            index_elements=[stream_events.c.stream, stream_events.c.event_id])
        with self.index.transaction() as conn:
            conn.execute(stream_windows.insert().values(
                id=window_id, stream=stream, state="open", input=input, items=0,
                opened_at=now))
            pairs = iter(events)
            while chunk := list(itertools.islice(pairs, 5000)):
                conn.execute(ins, [{"stream": stream, "event_id": e, "window_id": window_id,
                                    "key": k, "state": "accepted", "seen_at": now}
                                   for e, k in chunk])
            count = len(self._keys(conn, window_id))
            conn.execute(update(stream_windows).where(stream_windows.c.id == window_id)
                         .values(items=count))
        return count

    def reject(self, stream: str, rejections: Sequence[Rejection]) -> None:
        if not rejections:
            return
        now = self.index.clock()
        ins = self.index._insert(stream_events).on_conflict_do_nothing(
            index_elements=[stream_events.c.stream, stream_events.c.event_id])
        with self.index.transaction() as conn:
            conn.execute(ins, [{"stream": stream, "event_id": r.event_id, "window_id": None,
                                "key": r.key, "state": "rejected", "reason": r.reason[:2000],
                                "seen_at": now} for r in rejections])

    def window_keys(self, window_id: str) -> list[str]:
        with self.index.transaction() as conn:
            return self._keys(conn, window_id)

    @staticmethod
    def _keys(conn: Any, window_id: str) -> list[str]:
        # distinct: two records naming one key (two uploads, one window) are one item
        return list(conn.execute(select(stream_events.c.key).distinct()
                                 .where(stream_events.c.window_id == window_id)
                                 .order_by(stream_events.c.key)).scalars())

    def close_window(self, window_id: str, *, state: str = "enqueued") -> None:
        """enqueued: its job's tasks are on the queue; refused: no job could be made of it;
        empty: its events were all taken by another consumer."""
        with self.index.transaction() as conn:
            conn.execute(update(stream_windows).where(stream_windows.c.id == window_id)
                         .values(state=state, closed_at=self.index.clock()))

    def open_windows(self, stream: str) -> list[OpenWindow]:
        """Windows recorded but whose job was not seen enqueued: a consumer died there."""
        query = (select(stream_windows.c.id, stream_windows.c.input)
                 .where(stream_windows.c.stream == stream, stream_windows.c.state == "open")
                 .order_by(stream_windows.c.opened_at))
        with self.index.transaction() as conn:
            return [OpenWindow(r.id, r.input) for r in conn.execute(query)]

    def windows(self, stream: str) -> list[dict[str, Any]]:
        query = (select(stream_windows).where(stream_windows.c.stream == stream)
                 .order_by(stream_windows.c.opened_at))
        with self.index.transaction() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def rejected(self, stream: str) -> list[dict[str, Any]]:
        query = (select(stream_events.c.event_id, stream_events.c.key, stream_events.c.reason)
                 .where(stream_events.c.stream == stream, stream_events.c.state == "rejected")
                 .order_by(stream_events.c.seen_at))
        with self.index.transaction() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def forget(self, stream: str, *, before: float) -> int:
        """Drop the events seen before then, except those of an open window: they are kept
        only while the source could offer their records again. Returns how many."""
        still_open = select(stream_windows.c.id).where(stream_windows.c.stream == stream,
                                                       stream_windows.c.state == "open")
        with self.index.transaction() as conn:
            gone = conn.execute(delete(stream_events).where(
                stream_events.c.stream == stream, stream_events.c.seen_at < before,
                or_(stream_events.c.window_id.is_(None),
                    stream_events.c.window_id.not_in(still_open))))
            return int(gone.rowcount or 0)

    # Checkpoints: a source's position per shard ------------------------------------------

    def checkpoints(self, stream: str) -> dict[str, str]:
        query = select(stream_checkpoints.c.shard, stream_checkpoints.c.position).where(
            stream_checkpoints.c.stream == stream)
        with self.index.transaction() as conn:
            return {r.shard: r.position for r in conn.execute(query)}

    def save_checkpoints(self, stream: str, positions: Mapping[str, str]) -> None:
        if not positions:
            return
        now = self.index.clock()
        ins = self.index._insert(stream_checkpoints)
        ins = ins.on_conflict_do_update(
            index_elements=[stream_checkpoints.c.stream, stream_checkpoints.c.shard],
            set_={"position": ins.excluded.position, "updated_at": ins.excluded.updated_at})
        with self.index.transaction() as conn:
            conn.execute(ins, [{"stream": stream, "shard": s, "position": p, "updated_at": now}
                               for s, p in positions.items()])
