"""The keys of a tar shard's members: one item per member, fetched by one ranged read.

A member that can be an item (a regular file with a safe name) is keyed

    <shard key>@<start>-<end>/<member name>     e.g. shards/000123.tar@1536-90112/a/b.jpg

where start and end (excluded) are the byte range of its data in the shard, so a
worker reads just those bytes (``ObjectStore.get_range``), and the result is keyed by
shard and member. A member that cannot be one (a link, a device, a FIFO, a sparse
file, a name that is absolute, has '..' or cannot be an object key) is keyed

    <shard key>@<header offset>!<kind>           e.g. shards/000123.tar@4096!link

and fails, with the reason, when a worker reads it: nothing is lost silently, and the
rest of the shard goes on. A key is taken for a member key only in these two exact
forms after a name ending in ``.tar``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from gpufleet.errors import ItemError, ObjectTooLarge

__all__ = ["REFUSED", "Member", "member_key", "parse_member", "refused_key"]

REFUSED = {
    "link": "a symbolic or hard link",
    "device": "a device file",
    "fifo": "a FIFO",
    "sparse": "a sparse file",
    "bad-name": "its name is absolute, has '..', or cannot be an object key",
}
_MEMBER = re.compile(r"(?P<shard>.+?\.tar)@(?P<start>\d{1,15})"
                     r"(?:-(?P<end>\d{1,15})/(?P<name>.+)|!(?P<kind>[a-z-]+))", re.IGNORECASE)


def member_key(shard: str, start: int, end: int, name: str) -> str:
    return f"{shard}@{start}-{end}/{name}"


def refused_key(shard: str, header_offset: int, kind: str) -> str:
    assert kind in REFUSED
    return f"{shard}@{header_offset}!{kind}"


@dataclass(frozen=True, slots=True)
class Member:
    shard: str
    start: int
    end: int  # excluded; equal to start for a refused member
    refused: str | None = None  # a kind from REFUSED

    def read(self, get_range: Callable[[str, int, int], bytes], *,
             max_bytes: int | None = None) -> bytes:
        """The member's bytes through get_range(shard, start, end); ItemError if it cannot be
        an item, is over max_bytes, or the shard no longer holds all of it."""
        return self.whole(get_range(self.shard, *self.span(max_bytes)))

    def span(self, max_bytes: int | None = None) -> tuple[int, int]:
        """(start, end) to read; ItemError first if it cannot be an item or is over max_bytes."""
        if self.refused is not None:
            reason = REFUSED.get(self.refused, self.refused)
            raise ItemError(f"tar member at byte {self.start:,} of {self.shard} is refused: "
                            f"{reason}; only regular files are items")
        size = self.end - self.start
        if max_bytes is not None and size > max_bytes:
            raise ObjectTooLarge(size, max_bytes)
        return self.start, self.end

    def whole(self, data: bytes) -> bytes:
        """data, read from the span: ItemError if the shard no longer held all of it."""
        size = self.end - self.start
        if len(data) != size:
            raise ItemError(f"tar member at bytes {self.start:,}-{self.end:,} of {self.shard} "
                            f"is cut short ({len(data):,} of {size:,} bytes): the shard has "
                            "changed since it was listed")
        return data


def parse_member(key: str) -> Member | None:
    """The member a shard member key names; None for any other key."""
    if "@" not in key:  # the cheap test first: every item of every job comes through here
        return None
    found = _MEMBER.fullmatch(key)
    if found is None:
        return None
    start = int(found["start"])
    if found["kind"] is not None:
        return Member(found["shard"], start, start, refused=found["kind"])
    end = int(found["end"])
    return Member(found["shard"], start, end) if end >= start else None
