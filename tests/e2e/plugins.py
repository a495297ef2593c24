"""Plugin models for tests, loaded as ``tests.e2e.plugins:FlakyTagger`` and so on.

FlakyTagger's inference fails (a transient error: the task is retried, then
dead-lettered) until the file named by ``heal_file`` exists. PoisonTagger kills
its worker on certain objects. DeviceTagger tags each item with the GPUs its
worker was given (CUDA_VISIBLE_DEVICES), or finds its device lost.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpufleet.domain import Tag
from gpufleet.errors import DeviceLost
from gpufleet.models.synthetic import SyntheticTagger


class FlakyTagger(SyntheticTagger):
    name = "flaky"

    def __init__(self, settings: Any, *, heal_file: str) -> None:
        super().__init__(settings, item_ms=1)
        self.heal_file = Path(heal_file)

    def infer(self, batch: Sequence[bytes]) -> list[list[Tag]]:
        if not self.heal_file.exists():
            raise RuntimeError("GPU fell off the bus")
        return super().infer(batch)


class PoisonTagger(SyntheticTagger):
    """A model whose decoder kills the worker on any object starting with b"POISON", as an
    out-of-memory kill or a crash in native code would: no exception, no nack."""

    name = "poison"

    def __init__(self, settings: Any, **params: Any) -> None:
        super().__init__(settings, item_ms=1)

    def preprocess(self, data: bytes) -> bytes:
        if data.startswith(b"POISON"):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().preprocess(data)


class DeviceTagger(SyntheticTagger):
    """Tags every item ``gpu-<CUDA_VISIBLE_DEVICES>``: which GPU's worker did it. The GPU
    named by ``lost`` runs nothing: every batch raises DeviceLost, as a CUDA context a
    fault has broken does."""

    name = "device"

    def __init__(self, settings: Any, *, item_ms: str = "5", lost: str = "") -> None:
        super().__init__(settings, item_ms=item_ms)
        self.device = os.environ.get("CUDA_VISIBLE_DEVICES", "none")
        self.lost = lost

    def infer(self, batch: Sequence[bytes]) -> list[list[Tag]]:
        if self.device == self.lost:
            raise DeviceLost(f"the GPU (cuda:0, GPU {self.device}) can run nothing more: "
                             "CUDA error: an illegal memory access was encountered")
        super().infer(batch)
        return [[Tag(id=f"gpu-{self.device}", label=f"gpu-{self.device}", score=1.0)]
                for _ in batch]
