"""A directory as an object store: keys are relative paths under a root."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from gpufleet.errors import ObjectMissing, ObjectRejected, ObjectTooLarge, StoreUnavailable
from gpufleet.store.base import Location

if TYPE_CHECKING:
    from gpufleet.config import Settings

# Write failures no retry can fix: the key itself cannot be a file here. Anything
# else (disk full, permissions, I/O errors) may pass, so it stays StoreUnavailable.
_REJECTED = {
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOTDIR: "part of its path is an object, not a folder",
    errno.EEXIST: "part of its path is an object, not a folder",
    errno.EISDIR: "it is a folder of other objects",
}
# Read failures that mean "there is no such object" rather than "cannot read now".
_ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG)


_READ = os.O_RDONLY | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_DIRS_CACHED = 4096  # resolved folders remembered: a worker touches a few folders many times
_CHUNK = 1 << 20  # bytes a read asks for once past the size fstat gave


class LocalStore:
    # Its reads and writes are system calls of microseconds: a second thread making them
    # only fights the first for the interpreter lock. One worker on the no-op model did
    # 5,050 items/s with one, 3,100-3,270 with eight (benchmarks/overhead.py's objects).
    # A directory on a network file system (EFS, NFS) is another matter: there, set
    # GPUFLEET_FETCH_CONCURRENCY.
    concurrency = 1

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self._root = str(self.root)
        self._dirs: dict[str, str] = {}  # a key's folder -> its real path, checked inside root
        self._seq = itertools.count()

    def _folder(self, key: str) -> tuple[str, str]:
        """The real path of a key's folder, checked inside the root, and the key's name.

        Keys are validated upstream; this is the last guard against escaping the root.
        Resolving every component costs a system call each, per object, so a folder's
        real path is resolved once and remembered; the file itself is opened without
        following links (a link is resolved whole and checked again, see _followed).
        """
        folder, _, name = key.rpartition("/")
        if name in ("", ".", ".."):
            raise ObjectMissing(f"key {key!r} is outside the store")
        base = self._dirs.get(folder)
        if base is None:
            base = os.path.realpath(os.path.join(self._root, folder)) if folder else self._root
            self._check_inside(key, base, folder_ok=True)
            if len(self._dirs) >= _DIRS_CACHED:
                self._dirs.clear()
            self._dirs[folder] = base
        return base, name

    def _path(self, key: str) -> Path:
        base, name = self._folder(key)
        path = os.path.join(base, name)
        return Path(self._followed(key, path) if os.path.islink(path) else path)

    def _followed(self, key: str, link: str) -> str:
        path = os.path.realpath(link)
        self._check_inside(key, path, folder_ok=False)
        return path

    def _check_inside(self, key: str, path: str, *, folder_ok: bool) -> None:
        if not (path.startswith(self._root + os.sep) or (folder_ok and path == self._root)):
            raise ObjectMissing(f"key {key!r} is outside the store")

    def _open(self, key: str, path: str) -> int:
        try:
            return os.open(path, _READ | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            return os.open(self._followed(key, path), _READ)  # a link within the root

    def get_range(self, key: str, start: int, end: int) -> bytes:
        _check_range(start, end)
        base, name = self._folder(key)
        path = os.path.join(base, name)
        try:
            fd = self._open(key, path)
            try:
                return os.pread(fd, end - start, start) if end > start else b""
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno in _ABSENT:
                raise ObjectMissing(f"no such object: {key}") from None
            raise StoreUnavailable(f"cannot read {path}: {exc.strerror}") from exc

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        base, name = self._folder(key)
        path = os.path.join(base, name)
        try:
            fd = self._open(key, path)
            try:
                size = os.fstat(fd).st_size
                if max_bytes is not None and size > max_bytes:
                    raise ObjectTooLarge(size, max_bytes)
                data = _read_fd(fd, size, max_bytes)
                if max_bytes is not None and len(data) > max_bytes:  # it grew since fstat
                    raise ObjectTooLarge(max(len(data), os.fstat(fd).st_size), max_bytes)
                return data
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno in _ABSENT:
                raise ObjectMissing(f"no such object: {key}") from None
            raise StoreUnavailable(f"cannot read {path}: {exc.strerror}") from exc

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        base, name = self._folder(key)
        path = os.path.join(base, name)
        tmp = self._tmp_name(base)
        with self._writing(key, path):
            try:
                fd = os.open(tmp, _CREATE, 0o600)
            except FileNotFoundError:  # the key's first object in this folder
                os.makedirs(base, exist_ok=True)
                fd = os.open(tmp, _CREATE, 0o600)
            try:
                try:
                    _write_fd(fd, data)
                finally:
                    os.close(fd)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise

    def put_file(self, key: str, path: Path, *,
                 content_type: str = "application/octet-stream") -> None:
        """Like put, copied from a file a block at a time (bulk exports)."""
        base, name = self._folder(key)
        tmp = self._tmp_name(base)
        with self._writing(key, os.path.join(base, name)):
            os.makedirs(base, exist_ok=True)
            try:
                shutil.copyfile(path, tmp)
                os.replace(tmp, os.path.join(base, name))
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise

    def _tmp_name(self, base: str) -> str:
        # A name no other writer picks: this process, thread and a counter (no random bytes,
        # no retries). The rename then replaces whatever the key's entry was, a link too.
        return os.path.join(base, f".tmp-{os.getpid()}-{threading.get_ident()}-{next(self._seq)}")

    @contextlib.contextmanager
    def _writing(self, key: str, path: str) -> Iterator[None]:
        """A write's OSError as the store's: a key the disk refuses apart from a sick disk."""
        try:
            yield
        except OSError as exc:
            reason = _REJECTED.get(exc.errno or 0)
            if reason:
                raise ObjectRejected(f"cannot write {key}: {reason}") from exc
            raise StoreUnavailable(f"cannot write {path}: {exc.strerror}") from exc

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except OSError as exc:
            if exc.errno in _ABSENT:
                return False
            raise StoreUnavailable(f"cannot check {key}: {exc.strerror}") from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".tmp-")]
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(key)
        yield from sorted(found)

    def url(self, key: str) -> str:
        return self._path(key).as_uri()


def _check_range(start: int, end: int) -> None:
    if not 0 <= start <= end:
        raise ValueError(f"a byte range needs 0 <= start <= end, not {start}-{end}")


def open_local_location(uri: str, settings: Settings | None) -> Location:
    """``file:///dir/`` or a plain path as a Location; settings change nothing here."""
    parts = urlsplit(uri)
    # A file:// URI is percent-encoded (Path.as_uri writes a space as %20); a path is not.
    store = LocalStore(unquote(parts.path) if parts.scheme else uri)
    return Location(store, "", store.root.as_uri() + "/")


# Objects are read and written with os calls on the descriptor, not through io's file
# objects: those add three system calls each (fstat, ioctl, lseek), and each system call
# lets another of the worker's threads take the interpreter. A worker's run made a third
# fewer thread switches this way (benchmarks/overhead.py, the note of this change).
def _read_fd(fd: int, size: int, max_bytes: int | None) -> bytes:
    """The file's bytes: its size from fstat and one byte more, in one read; a file that
    grew since (or a short read) is read on, up to one byte over max_bytes."""
    data = os.read(fd, size + 1)
    if len(data) == size:
        return data
    chunks, total = [data], len(data)
    while max_bytes is None or total <= max_bytes:
        chunk = os.read(fd, _CHUNK if max_bytes is None else min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
