"""Tar shards (WebDataset style) as inputs: one item per regular-file member.

An input key ending in ``.tar`` is expanded when its job is submitted: its
headers are walked through ranged reads of the shard (a block at a time, so a
shard of large photos costs little more than its headers, and memory stays at
one block), and each member becomes a key of the forms in shardkeys.py. A
worker then fetches one member with one ranged GET. Expansion happens before
the API's per-job item limit and the tenant's quota count the items.

What is refused, and how:

- a link, a device, a FIFO, a sparse file, a name that is absolute or has '..':
  that member becomes an item that fails with the reason; the rest go on;
- directories and other archive structure: not items (nothing to tag);
- a file that is not a tar archive, or is truncated: the submission is refused
  with one line naming the shard;
- more entries than GPUFLEET_MAX_SHARD_ENTRIES: refused likewise, before the
  whole shard is read;
- a compressed shard (.tar.gz, .tgz, ...): refused: a member cannot be fetched by
  a ranged read inside a compressed stream (WebDataset shards are plain tar).
"""

from __future__ import annotations

import io
import posixpath
import re
import tarfile
from collections.abc import Iterable, Iterator

from gpufleet.errors import ItemError, ManifestError
from gpufleet.keys import key_problem
from gpufleet.shardkeys import member_key, refused_key
from gpufleet.store import Location

__all__ = ["expand_shards", "is_shard", "shard_members"]

_BLOCK_BYTES = 1024 * 1024  # read ahead per ranged read while walking the headers
# A tar starts with its first member's name: every magic here is one no UTF-8 name starts
# with, save bzip2's, whose first block header (the digits of pi) is checked too.
_MAGIC = ((re.compile(rb"\x1f\x8b"), "gzip"), (re.compile(rb"BZh[1-9]1AY&SY"), "bzip2"),
          (re.compile(rb"\xfd7zXZ\x00"), "xz"), (re.compile(rb"\x28\xb5\x2f\xfd"), "zstd"))
_COMPRESSED = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst")


def is_shard(key: str) -> bool:
    return key.lower().endswith(".tar")


def expand_shards(location: Location, keys: Iterable[str], *,
                  max_entries: int) -> Iterator[str]:
    """The keys, each tar shard's replaced by its members' keys, lazily, in order."""
    for key in keys:
        if is_shard(key):
            yield from shard_members(location, key, max_entries=max_entries)
        elif key.lower().endswith(_COMPRESSED):
            raise ManifestError(
                f"{location.uri}{key}: compressed tar shards are not supported: a member "
                "cannot be fetched by a ranged read inside a compressed stream; store "
                "shards as plain .tar")
        else:
            yield key


def shard_members(location: Location, shard: str, *, max_entries: int) -> Iterator[str]:
    """One key per member of the shard: regular files by their byte range, anything else
    as a refused member. ManifestError if it is not an intact tar or is too large."""
    where = location.uri + shard
    reader = _RangedReader(location, shard)
    entries = 0
    try:
        _check_not_compressed(reader, where)
        with tarfile.open(fileobj=reader, mode="r:") as tar:
            for info in tar:
                entries += 1
                if entries > max_entries:
                    raise ManifestError(f"{where}: more than {max_entries:,} entries "
                                        "(GPUFLEET_MAX_SHARD_ENTRIES)")
                key = _member(shard, info)
                if key is not None:
                    yield key
                # tarfile keeps every entry it has read (typeshed omits the list): let them
                # go, so memory stays flat however many members a shard has.
                tar.members.clear()  # type: ignore[attr-defined]
            _check_end(reader, tar.offset, where)
    except tarfile.TarError as exc:
        cut = "end of data" in str(exc) or "truncated" in str(exc)
        what = "truncated tar archive" if cut else "not a readable tar archive"
        raise ManifestError(f"{where}: {what} ({exc})") from None
    except ItemError as exc:  # missing, or too large to read
        raise ManifestError(f"{where}: {exc}") from None
    if entries == 0:
        raise ManifestError(f"{where}: an empty tar archive")


def _member(shard: str, info: tarfile.TarInfo) -> str | None:
    if info.isdir():
        return None
    kind = ("link" if info.issym() or info.islnk() else
            "device" if info.isdev() and not info.isfifo() else
            "fifo" if info.isfifo() else
            "sparse" if info.issparse() else
            None if info.isreg() else "device")
    if kind is not None:
        return refused_key(shard, info.offset, kind)
    name = info.name
    while name.startswith("./"):
        name = name[2:]
    key = member_key(shard, info.offset_data, info.offset_data + info.size, name)
    if (posixpath.isabs(info.name) or ".." in name.split("/") or key_problem(name)
            or key_problem(key)):
        return refused_key(shard, info.offset, "bad-name")
    return key


def _check_not_compressed(reader: _RangedReader, where: str) -> None:
    """A compressed stream named .tar: said as such, rather than as a bad header."""
    head = reader.read(10)
    reader.seek(0)
    for magic, kind in _MAGIC:
        if magic.match(head):
            raise ManifestError(f"{where}: {kind}-compressed data, not a plain tar archive: "
                                "a member cannot be fetched by a ranged read inside it")


def _check_end(reader: _RangedReader, end: int, where: str) -> None:
    """tarfile takes a short read after a member for the archive's end: an archive ends
    with a block of zeros, so a truncated one is told apart here."""
    reader.seek(end)
    block = reader.read(tarfile.BLOCKSIZE)
    if len(block) < tarfile.BLOCKSIZE:
        raise ManifestError(f"{where}: truncated tar archive (it ends inside a member or "
                            "without its end-of-archive blocks)")
    if block.count(0) != len(block):
        raise ManifestError(f"{where}: not a readable tar archive (a bad header at byte "
                            f"{end:,})")


class _RangedReader(io.RawIOBase):
    """A seekable file over an object, read a block at a time by ranged reads."""

    def __init__(self, location: Location, key: str) -> None:
        self._location, self._key = location, key
        self._pos = 0
        self._block_at, self._block = 0, b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            raise OSError("a ranged reader cannot seek from the end")
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise OSError("a ranged reader reads a bounded size")
        at = self._pos - self._block_at
        if at < 0 or at + size > len(self._block):
            if size > _BLOCK_BYTES:  # a long read (a pax header): once, not cached
                data = self._location.get_range(self._key, self._pos, self._pos + size)
                self._pos += len(data)
                return data
            self._block_at = self._pos
            self._block = self._location.get_range(self._key, self._pos,
                                                   self._pos + _BLOCK_BYTES)
            at = 0
        data = self._block[at:at + size]
        self._pos += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)
