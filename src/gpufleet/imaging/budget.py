"""A per-worker budget of decoded bytes in flight, so memory stays bounded whatever arrives.

Decoding runs on every core at once. Ordinary photos are small once decoded
(a JPEG is decoded at reduced size), but a 100-megapixel PNG or TIFF is hundreds
of megabytes while it is being reduced, and a handful at once would take a
worker to gigabytes. Each decode asks the budget for what its header says it
will need and waits while the budget is spent; an image larger than the whole
budget waits until nothing else is being decoded, then goes alone. So ordinary
photos never wait, big ones queue, and every one is still decoded.

A budget alone is not enough with glibc: a buffer freed on one decoding thread
stays in that heap for reuse, so eight threads that each decoded one big image
in turn keep eight images' worth of memory. Buffers of a megabyte and more are
therefore mapped and unmapped on their own (``M_MMAP_THRESHOLD``), and go back
to the system as soon as they are freed. Smaller ones (an ordinary photo's
pixels) are untouched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter
_UNMAPPED_FROM = 1 << 20


@functools.cache
def return_big_buffers_to_the_system() -> bool:
    """Have glibc map buffers of 1 MiB and more on their own (once per process)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt and mallopt(_M_MMAP_THRESHOLD, _UNMAPPED_FROM))


class DecodeBudget:
    def __init__(self, total_bytes: int) -> None:
        if total_bytes < 1:
            raise ValueError("a decode budget must be positive")
        return_big_buffers_to_the_system()
        self.total = total_bytes
        self._used = 0
        self._changed = threading.Condition()

    @property
    def used(self) -> int:
        with self._changed:
            return self._used

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        with self._changed:
            # Over the whole budget: wait for an empty budget, then take it all.
            while self._used and self._used + nbytes > self.total:
                self._changed.wait()
            self._used += nbytes
        try:
            yield
        finally:
            with self._changed:
                self._used -= nbytes
                self._changed.notify_all()
