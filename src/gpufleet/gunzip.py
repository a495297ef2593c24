"""Gzipped input read as a stream, with a ceiling on what it may expand to.

A manifest or an S3 Inventory file may come gzipped (``.csv.gz``, ``.jsonl.gz``).
Gzip expands up to about 1,000 times, so a few megabytes can hold terabytes of
zeros: the reader counts what it has decompressed and refuses past ``limit``
bytes with one line, instead of reading for hours. A damaged or truncated file
is refused the same way. ``seek(0)`` starts over, as the JSON reader needs.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable
from typing import IO, TypeVar

from gpufleet.errors import ManifestError

MAX_EXPANDED_BYTES = 8 * 1024**3  # 8 GiB: some 80 million keys; far beyond, a gzip bomb
_T = TypeVar("_T")


class Gunzipped(io.RawIOBase):
    def __init__(self, source: IO[bytes], *, name: str,
                 limit: int = MAX_EXPANDED_BYTES) -> None:
        self.source, self.name, self.limit = source, name, limit
        self._gzip = gzip.GzipFile(fileobj=source, mode="rb")
        self._expanded = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._counted(lambda: self._gzip.read(-1 if size is None else size))

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        return self._counted(lambda: self._gzip.readline(-1 if size is None else size))

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("a gzip stream can only start over")
        self._gzip.seek(0)
        self._expanded = 0
        return 0

    def close(self) -> None:
        self._gzip.close()
        self.source.close()
        super().close()

    def _counted(self, read: Callable[[], bytes]) -> bytes:
        data = self._guarded(read)
        self._expanded += len(data)
        if self._expanded > self.limit:
            raise ManifestError(f"{self.name}: refused: expands to more than "
                                f"{self.limit:,} bytes (a gzip bomb?)")
        return data

    def _guarded(self, read: Callable[[], _T]) -> _T:
        try:
            return read()
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise ManifestError(f"{self.name}: not valid gzip: {exc}") from None

