"""How busy this worker's GPUs are, read from NVML; nothing at all where there is none.

NVML (``nvidia-ml-py``, in the ``gpu`` extra) reports each GPU's utilisation over
its last sampling period (the share of time a kernel ran) and its memory in use.
The worker reports both in its registry row, so an operator sees idle GPUs and
the planner can trust its measured time per item. Without NVML or a GPU the
reading is None, and nothing else changes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GpuReading:
    gpus: int
    util_pct: float  # mean over this worker's GPUs
    memory_mb: float  # in use, summed


class GpuStats:
    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = _handles(pynvml, os.environ.get("CUDA_VISIBLE_DEVICES"), count)
            self._nvml = pynvml
        except Exception as exc:  # no library, no driver, no GPU: no reading
            log.debug("no GPU statistics: %s", exc)
            self._handles = []

    @property
    def available(self) -> bool:
        return bool(self._handles)

    def read(self) -> GpuReading | None:
        if not self._handles:
            return None
        try:
            utils = [self._nvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self._handles]
            used = [self._nvml.nvmlDeviceGetMemoryInfo(h).used for h in self._handles]
        except Exception as exc:  # a GPU fell off the bus: say so once per reading
            log.warning("cannot read GPU statistics: %s", exc)
            return None
        return GpuReading(len(self._handles), round(sum(utils) / len(utils), 1),
                          round(sum(used) / 2**20, 1))


def gpu_count() -> int:
    """GPUs NVML sees on this machine (0 without NVML, a driver or a GPU)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:
        log.debug("no GPU count from NVML: %s", exc)
        return 0


def _handles(nvml: Any, spec: str | None, count: int) -> list[Any]:
    """This process's GPUs: by index, or by UUID as ``--gpus`` or a scheduler may name them."""
    if spec is not None and spec.strip() and not all(
            p.strip().isdigit() for p in spec.split(",")):
        found = []
        for part in (p.strip() for p in spec.split(",")):
            try:
                found.append(nvml.nvmlDeviceGetHandleByIndex(int(part)) if part.isdigit()
                             else nvml.nvmlDeviceGetHandleByUUID(part))
            except Exception as exc:  # not a GPU NVML knows: read the ones it does
                log.debug("no NVML handle for GPU %s: %s", part, exc)
        return found
    return [nvml.nvmlDeviceGetHandleByIndex(i) for i in _visible(spec, count)]


def _visible(spec: str | None, count: int) -> list[int]:
    """NVML indexes of the GPUs CUDA_VISIBLE_DEVICES leaves this process (numbers only)."""
    if spec is None or not spec.strip():
        return list(range(count)) if spec is None else []
    visible = []
    for part in spec.split(","):
        part = part.strip()
        if not part.isdigit():
            return list(range(count))  # UUIDs or MIG names: _handles looks them up
        if int(part) < count:
            visible.append(int(part))
    return visible
