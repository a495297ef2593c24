"""The object-store interface and the location URLs that pick a backend."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from gpufleet.errors import ConfigError

if TYPE_CHECKING:
    from gpufleet.config import Settings


class ObjectStore(Protocol):
    """A flat namespace of keys to bytes. Keys are validated object keys."""

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes; ObjectMissing if absent, StoreUnavailable if unreachable.

        With max_bytes, an object over it is ObjectTooLarge, found from its size
        before its body is read: memory stays bounded by max_bytes, whatever is stored.
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
        return self.store.get(self.key(relative), max_bytes=max_bytes)

    def put(self, relative: str, data: bytes, *, content_type: str = "application/octet-stream"
            ) -> None:
        self.store.put(self.key(relative), data, content_type=content_type)

    def list(self) -> Iterator[str]:
        cut = len(self.prefix)
        for key in self.store.list(self.prefix):
            yield key[cut:]

    def child(self, relative_prefix: str) -> Location:
        prefix = relative_prefix.strip("/") + "/"
        return Location(self.store, self.prefix + prefix, self.uri.rstrip("/") + "/" + prefix)


def open_location(uri: str, *, settings: Settings | None = None) -> Location:
    """Open ``file:///dir/`` (or a plain path) or ``s3://bucket/prefix/``.

    settings size the S3 connection pool to the fetch concurrency and say how
    to encrypt what is written; without them the store's defaults apply.
    """
    parts = urlsplit(uri)
    if parts.scheme == "s3":
        from gpufleet.store.s3 import S3Store, s3_prefix

        prefix = s3_prefix(uri)
        bucket = S3Store.from_settings(parts.netloc, settings)
        return Location(bucket, prefix, f"s3://{parts.netloc}/{prefix}")
    if parts.scheme in ("", "file"):
        from gpufleet.store.local import LocalStore

        path = parts.path if parts.scheme else uri
        store = LocalStore(path)
        return Location(store, "", store.root.as_uri() + "/")
    raise ConfigError(f"unsupported location {uri!r}: expected file:///path/ or "
                      "s3://bucket/prefix/")
