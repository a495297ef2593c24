"""The object-store interface and the location URLs that pick a backend."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from gpufleet.registry import Registry
from gpufleet.shardkeys import Member, parse_member

if TYPE_CHECKING:
    from gpufleet.config import Settings

_T = TypeVar("_T")
_R = TypeVar("_R")


class ObjectStore(Protocol):
    """A flat namespace of keys to bytes. Keys are validated object keys."""

    # Requests worth having in flight at once to this store, where
    # GPUFLEET_FETCH_CONCURRENCY does not say: a worker reads and writes objects with
    # that many threads (worker/io_pools.py).
    concurrency: int

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes; ObjectMissing if absent, StoreUnavailable if unreachable.

        With max_bytes, an object over it is ObjectTooLarge, found from its size
        before its body is read: memory stays bounded by max_bytes, whatever is stored.
        """
        ...

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes start to end (end excluded) of the object, as an HTTP Range asks: fewer
        where the object ends sooner, none from its end on. ObjectMissing if absent.

        One request for one member of a tar shard (shards.py), whatever the shard's size.
        """
        ...

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write atomically: a reader sees the old object or the new one, never a part.

        ObjectRejected if the store can never hold this key (no retry helps);
        StoreUnavailable if it cannot now (unreachable, full, refused).
        """
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under prefix, in key order, lazily."""
        ...

    def url(self, key: str) -> str:
        """A URL naming the object (not a signed download URL)."""
        ...


@dataclass(frozen=True, slots=True)
class Location:
    """A store and a key prefix inside it: ``file:///data/photos/`` or ``s3://b/p/``."""

    store: ObjectStore
    prefix: str
    uri: str

    def key(self, relative: str) -> str:
        return self.prefix + relative

    def get(self, relative: str, *, max_bytes: int | None = None) -> bytes:
        """The object, or the tar member a shard member key names (shardkeys.py)."""
        member = parse_member(relative)
        if member is None:
            return self.store.get(self.key(relative), max_bytes=max_bytes)
        return member.read(self.get_range, max_bytes=max_bytes)

    def get_many(self, relatives: Sequence[str], *, max_bytes: int | None = None
                 ) -> list[bytes | Exception]:
        """Each object's bytes, or the exception reading it raised: a failure is its item's
        alone. A store that reads many at once (S3 through the CRT) gets them together."""
        members = [parse_member(r) for r in relatives]
        if any(members):  # a shard's members: ranged reads
            ranges = getattr(self.store, "get_ranges", None)
            if ranges is not None and all(members):
                return self._members(ranges, [m for m in members if m], max_bytes)
            return one_by_one(lambda r: self.get(r, max_bytes=max_bytes), relatives)
        many = getattr(self.store, "get_many", None)
        if many is None:
            return one_by_one(lambda r: self.get(r, max_bytes=max_bytes), relatives)
        try:
            found: list[bytes | Exception] = many([self.key(r) for r in relatives],
                                                  max_bytes=max_bytes)
        except Exception as exc:  # the store as a whole: every read failed with it
            found = [exc] * len(relatives)
        return found

    def _members(self, get_ranges: Callable[..., list[bytes | Exception]],
                 members: list[Member], max_bytes: int | None) -> list[bytes | Exception]:
        """Members of shards read together (get_ranges: all in flight at once)."""
        spans = one_by_one(lambda m: m.span(max_bytes), members)
        wanted = [(self.key(m.shard), *span) for m, span in zip(members, spans, strict=True)
                  if not isinstance(span, Exception)]
        try:
            read = iter(get_ranges(wanted))
        except Exception as exc:  # the store as a whole: every read failed with it
            read = iter([exc] * len(wanted))
        found: list[bytes | Exception] = []
        for member, span in zip(members, spans, strict=True):
            data = span if isinstance(span, Exception) else next(read)
            found.append(data if isinstance(data, Exception)
                         else one_by_one(member.whole, [data])[0])
        return found

    def get_range(self, relative: str, start: int, end: int) -> bytes:
        return self.store.get_range(self.key(relative), start, end)

    def put(self, relative: str, data: bytes, *, content_type: str = "application/octet-stream"
            ) -> None:
        self.store.put(self.key(relative), data, content_type=content_type)

    def put_many(self, objects: Sequence[tuple[str, bytes]], *,
                 content_type: str = "application/octet-stream") -> list[Exception | None]:
        """Write each (relative key, bytes); None where written, else the exception it
        raised. A store that writes many at once (S3 through the CRT) gets them together."""
        many = getattr(self.store, "put_many", None)
        if many is None:
            return one_by_one(lambda o: self.put(*o, content_type=content_type), objects)
        try:
            written: list[Exception | None] = many(
                [(self.key(r), data) for r, data in objects], content_type=content_type)
        except Exception as exc:  # the store as a whole: every write failed with it
            written = [exc] * len(objects)
        return written

    def list(self) -> Iterator[str]:
        cut = len(self.prefix)
        for key in self.store.list(self.prefix):
            yield key[cut:]

    def child(self, relative_prefix: str) -> Location:
        prefix = relative_prefix.strip("/") + "/"
        return Location(self.store, self.prefix + prefix, self.uri.rstrip("/") + "/" + prefix)


def one_by_one(call: Callable[[_T], _R], items: Iterable[_T]) -> list[_R | Exception]:
    """call(item) for each item, or the exception it raised: one item's failure is its own
    (the caller tells an item's error, an ItemError, from the store's)."""
    found: list[_R | Exception] = []
    for item in items:
        try:
            found.append(call(item))
        except Exception as exc:
            found.append(exc)
    return found


@runtime_checkable
class Presigning(Protocol):
    """A store that can hand out a time-limited HTTPS URL for one object (S3)."""

    def presign(self, key: str, *, expires_s: int) -> str: ...


@runtime_checkable
class FileUploads(Protocol):
    """A store that can write an object from a local file without holding it in memory."""

    def put_file(self, key: str, path: Path, *, content_type: str = "application/octet-stream"
                 ) -> None: ...


@runtime_checkable
class HealthChecked(Protocol):
    """A store with a cheap way to prove it is reachable with these credentials."""

    def check(self) -> None:
        """StoreUnavailable unless the store answers."""
        ...


LocationOpener = Callable[[str, "Settings | None"], Location]

STORES = Registry("location", {
    "": "gpufleet.store.local:open_local_location",
    "file": "gpufleet.store.local:open_local_location",
    "s3": "gpufleet.store.s3:open_s3_location",
}, expected="file:///path/ or s3://bucket/prefix/")


def open_location(uri: str, *, settings: Settings | None = None) -> Location:
    """Open ``file:///dir/`` (or a plain path) or ``s3://bucket/prefix/``.

    settings size the S3 connection pool to the fetch concurrency and say how
    to encrypt what is written; without them the store's defaults apply.
    """
    opener: LocationOpener = STORES.load(urlsplit(uri).scheme, shown=uri)
    return opener(uri, settings)
