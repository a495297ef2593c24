"""What the model gets for an item: its bytes as they are, or the image its job's chain made.

A task without a preprocessing chain goes to ``tagger.preprocess(bytes)`` as it always
did (on a GPU, a JPEG travels on to nvJPEG). A task with one is decoded and put through
the chain on the CPU, in the decode threads; the result goes to the tagger's optional
``preprocess_image(image)`` (which a tagger may pair with a ``draft_size``: the JPEG
then decodes at reduced scale), or, for a tagger that reads only bytes, is encoded
(uncompressed TIFF: lossless and cheap; or the chain's last ``format=``) and handed to
``preprocess``.
"""

from __future__ import annotations

import threading
from typing import Any

from gpufleet.config import Settings
from gpufleet.domain import Task
from gpufleet.errors import GpufleetError, ItemError
from gpufleet.imaging.budget import DecodeBudget
from gpufleet.models import Tagger
from gpufleet.preprocess.chain import parse_chain
from gpufleet.preprocess.prepare import Preparer

_KEPT = 64  # chains whose steps a worker keeps loaded


class ModelInputs:
    def __init__(self, tagger: Tagger, settings: Settings) -> None:
        self.tagger, self.settings = tagger, settings
        self._take_image = getattr(tagger, "preprocess_image", None)
        draft = getattr(tagger, "draft_size", None) if self._take_image else None
        self._draft: tuple[int, int] | None = (int(draft[0]), int(draft[1])) if draft else None
        budget = getattr(tagger, "budget", None)
        self._budget = budget if isinstance(budget, DecodeBudget) else DecodeBudget(
            settings.worker.decode_budget_mb * 2**20)
        self._preparers: dict[str, Preparer | GpufleetError] = {}
        self._lock = threading.Lock()

    def make(self, task: Task, data: bytes) -> Any:
        """The model input for one of the task's objects; ItemError for this item alone."""
        if not task.preprocess:
            return self.tagger.preprocess(data)
        preparer = self._preparer(task.preprocess)
        image = preparer.image(data)
        if self._take_image is not None:
            return self._take_image(image)
        return self.tagger.preprocess(preparer.encoded(image))

    def _preparer(self, spec: str) -> Preparer:
        with self._lock:
            if spec not in self._preparers:
                if len(self._preparers) >= _KEPT:  # a long-lived worker meets many chains
                    self._preparers.clear()
                try:
                    self._preparers[spec] = Preparer(
                        parse_chain(spec), max_pixels=self.settings.worker.max_pixels,
                        budget=self._budget, draft_size=self._draft)
                except GpufleetError as exc:  # a step this worker cannot load: said per item
                    self._preparers[spec] = exc
            found = self._preparers[spec]
        if isinstance(found, GpufleetError):
            raise ItemError(f"preprocess {spec!r}: {found}")
        return found
