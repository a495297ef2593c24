"""GPU readings: which GPUs are this worker's, and nothing at all without NVML or a GPU."""

from __future__ import annotations

import pytest

from gpufleet.worker.gpustats import GpuStats, _visible


@pytest.mark.parametrize(("spec", "count", "expected"), [
    (None, 3, [0, 1, 2]),       # unset: every GPU
    ("", 3, []),                # set empty: none
    ("1", 3, [1]),
    ("2,0", 3, [2, 0]),
    ("0,7", 2, [0]),            # a GPU that is not there is skipped
    ("GPU-8f3a", 2, [0, 1]),    # UUIDs: counted as every GPU, as nvidia-smi shows them
])
def test_the_visible_gpus_follow_cuda_visible_devices(
        spec: str | None, count: int, expected: list[int]) -> None:
    assert _visible(spec, count) == expected


def test_without_a_gpu_there_is_no_reading() -> None:
    stats = GpuStats()
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("this machine has NVML and a driver: readings are real here")
    except Exception:
        pass
    assert not stats.available and stats.read() is None
