"""The GPU path's tests. On a CUDA machine they run on the GPU; without one they run
the very same steps on the CPU in float32 (torchvision's or simplejpeg's libjpeg-turbo
decoding where nvJPEG would), and the tests that need CUDA itself are skipped, with the
reason; where torch or simplejpeg is missing, all are."""

from __future__ import annotations

import pytest


def _missing() -> str | None:
    try:
        import simplejpeg  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        return f"the GPU extra is not installed ({exc}): pip install 'gpufleet[gpu]'"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _missing()
    for item in items:
        if "tests/gpu/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def cuda_only(device: str) -> None:
    if device != "cuda":
        pytest.skip("needs a CUDA GPU")
