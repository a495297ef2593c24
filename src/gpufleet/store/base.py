"""The object-store interface and the location URLs that pick a backend."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from gpufleet.errors import ConfigError, ItemError

if TYPE_CHECKING:
    from gpufleet.config import Settings


class ObjectStore(Protocol):
    """A flat namespace of keys to bytes. Keys are validated object keys."""

    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectMissing if absent, StoreUnavailable if unreachable."""
        ...

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write atomically: a reader sees the old object or the new one, never a part."""
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
        data = self.store.get(self.key(relative))
        if max_bytes is not None and len(data) > max_bytes:
            raise ItemError(f"object is {len(data):,} bytes, over the limit of {max_bytes:,}")
        return data

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
