"""Tests that need a CUDA GPU: skipped, with the reason, on a machine without one."""

from __future__ import annotations

import pytest


def _cuda() -> str | None:
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU (these run on a GPU machine: pytest -m gpu)"
    try:
        import simplejpeg  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as exc:
        return f"the GPU extra is not installed ({exc}): pip install 'gpufleet[gpu]'"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _cuda()
    for item in items:
        if "tests/gpu/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
