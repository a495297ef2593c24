"""A stand-in model with a known cost: ``synthetic?item_ms=10&bootstrap_s=300``.

It reads every object (any bytes), sleeps the bootstrap once and ``item_ms``
per item, and returns tags derived from the content's hash, so tests and
benchmarks can reproduce "10 ms per image, 5 minutes to bootstrap" at any scale.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from gpufleet.domain import Tag
from gpufleet.models.base import as_float
from gpufleet.models.params import Parameter

if TYPE_CHECKING:
    from gpufleet.config import Settings

_TOP_K = 5
# Its 1,000 classes' ids and labels, made once: formatting them per tag was a tenth of a
# worker's interpreter time with item_ms=0 (benchmarks/overhead.py).
_CLASSES = [(f"syn{n:04d}", f"class-{n:03d}") for n in range(1000)]
# The digest's first _TOP_K big-endian 16-bit numbers pick the classes, read in one call
# (slicing and int.from_bytes per tag took a third of this function's 7.5 us an item).
_CLASS_NUMBERS = struct.Struct(f">{_TOP_K}H")


class SyntheticTagger:
    name = "synthetic"
    PARAMETERS: Mapping[str, Parameter] = {
        "item_ms": Parameter(kind=float, low=0, high=60_000),
        "bootstrap_s": Parameter(kind=float, low=0, high=3600),
        "batch_size": Parameter(kind=int, low=1, high=4096),
    }

    def __init__(self, settings: Settings | None = None, *, item_ms: str | float = 10,
                 bootstrap_s: str | float = 0, batch_size: str | int = 32) -> None:
        self.item_ms = as_float("item_ms", item_ms)
        self.bootstrap_s = as_float("bootstrap_s", bootstrap_s)
        self.batch_size = max(1, int(as_float("batch_size", batch_size)))

    def bootstrap(self) -> None:
        time.sleep(self.bootstrap_s)

    def preprocess(self, data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def infer(self, batch: Sequence[bytes]) -> list[list[Tag]]:
        if self.item_ms:  # (a sleep of 0 is still a system call, and lets go of the GIL)
            time.sleep(self.item_ms * len(batch) / 1000)
        return [_tags(digest) for digest in batch]


def _tags(digest: bytes) -> list[Tag]:
    # Deterministic: the same bytes always give the same tags and scores.
    tags = []
    remaining = 1.0
    numbers = _CLASS_NUMBERS.unpack_from(digest)
    for n, byte in zip(numbers, digest[20:20 + _TOP_K], strict=True):
        tag_id, label = _CLASSES[n % 1000]
        score = round(remaining * (0.5 + byte / 512), 4)
        remaining -= score
        tags.append(Tag(tag_id, label, score))
    return tags
