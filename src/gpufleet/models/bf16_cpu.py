"""A network's ONNX export run on a CPU in bfloat16, through OpenVINO.

CPUs with bfloat16 instructions (AVX512_BF16 on AMD Zen 4 and later, AMX on Intel Xeon
Sapphire Rapids and later: AWS's c7a/m7a and c7i/m7i) multiply bfloat16 at about twice
float32's rate. ONNX Runtime's CPU provider has no such kernels; OpenVINO's has. On a
2-core Zen 4 machine, one thread, batch 16, EfficientNet-Lite0 ran at 181 images/s in
bfloat16 against ONNX Runtime's 94 in float32, with top-1 and top-5 on the 200
labelled sample photos unchanged (0.890, 0.985) and the best tag the same for 196 of
200 photos; on a 2-core Intel Xeon with AMX, 270 against 120, the best tag the same for
195 (``python benchmarks/pipeline.py`` measures both on the machine at hand).
Inputs and outputs stay float32: the conversion happens inside.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)
Array = npt.NDArray[np.float32]


def cpu_has_bf16() -> bool:
    """Whether OpenVINO is installed and this CPU multiplies bfloat16 natively."""
    try:
        import openvino
    except ImportError:
        return False
    try:
        capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception as exc:  # installed but unable to start: float32 it is
        log.warning("OpenVINO cannot read this CPU's capabilities, so float32: %s", exc)
        return False
    return "BF16" in capabilities


def bf16_runner(path: Path, *, streams: int, threads: int) -> Callable[[Array], Array]:
    """``run(x)``: logits of the model at ``path`` for the float32 batch x, in bfloat16.

    ``streams`` batches may run at once, from as many threads, each on ``threads``
    threads of OpenVINO's. Raises ImportError without OpenVINO, RuntimeError for a model
    it cannot compile.
    """
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16",
        "NUM_STREAMS": streams,
        "INFERENCE_NUM_THREADS": streams * threads,
        # A worker's decode threads share these cores: a thread pinned to a core would
        # wait for it, where an unpinned one moves to whichever core is free.
        "ENABLE_CPU_PINNING": False,
    })
    local = threading.local()  # a request per calling thread: one batch each at a time

    def run(x: Array) -> Array:
        request: Any = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        # A copy: the request writes its next batch's logits into the same buffer.
        return np.array(request.infer({0: x})[0], dtype=np.float32)

    return run
