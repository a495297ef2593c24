"""A directory inbox: manifests are files, taken once complete (see ``intake.inbox``)."""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gpufleet.errors import ConfigError
from gpufleet.intake.inbox import Arrival

_SKIPPED_SUFFIXES = (".tmp", ".part", ".partial", "~")


class DirectoryInbox:
    """Every file under root, taken once its last write is settle_s old and it read whole."""

    @classmethod
    def from_uri(cls, uri: str, *, settle_s: float = 2.0) -> DirectoryInbox:
        parts = urlsplit(uri)
        return cls(Path(unquote(parts.path) if parts.scheme else uri), settle_s=settle_s)

    def __init__(self, root: Path, *, settle_s: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = root.expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"inbox {self.root}: cannot create it: {exc.strerror}") from None
        self.uri = self.root.as_uri() + "/"
        self.settle_s, self.clock = settle_s, clock
        self._settled: dict[str, tuple[int, int]] = {}  # key -> (size, mtime) taken

    def arrivals(self) -> list[Arrival]:
        found = []
        now = self.clock()
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if any(part.startswith(".") for part in key.split("/")) or \
                    key.endswith(_SKIPPED_SUFFIXES):
                continue
            try:
                if not path.is_file():
                    continue
                before = path.stat()
                signature = (before.st_size, before.st_mtime_ns)
                if self._settled.get(key) == signature or \
                        now - before.st_mtime < self.settle_s:
                    continue  # taken already, or still being written
                data = path.read_bytes()
                after = path.stat()
            except OSError:
                continue  # removed or replaced meanwhile: the next look sees what is there
            if (after.st_size, after.st_mtime_ns) != signature or len(data) != after.st_size:
                continue
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            found.append(Arrival(key, digest, before.st_mtime, functools.partial(bytes, data),
                                 token=signature))
        return found

    def settle(self, arrival: Arrival, *, handled: bool) -> None:
        if handled:
            self._settled[arrival.key] = arrival.token

    def default_input(self, key: str) -> str:
        return (self.root / key).parent.as_uri() + "/"

    def close(self) -> None:
        pass
