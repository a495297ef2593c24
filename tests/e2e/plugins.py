"""A plugin model for tests, loaded as ``tests.e2e.plugins:FlakyTagger``.

Its inference fails (a transient error: the task is retried, then
dead-lettered) until the file named by ``heal_file`` exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpufleet.domain import Tag
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
