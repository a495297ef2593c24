"""How close one worker comes to the hardware's limit, measured in one run.

Prints, on the machine it runs on:

- the CPU decode bound: the reference decode + preprocess (Pillow), one process per core,
  and the same in one thread per core of one process, as a worker's decode pool runs it
  (every photo on a CPU; on a GPU, jobs with a preprocessing chain and the images
  nvJPEG does not take): the ratio says how much of the cores the interpreter lock
  leaves to one worker;
- on CUDA, the GPU decode bound: nvJPEG batched decode (``torchvision.io.decode_jpeg``,
  512 per call), alone and with the GPU crop the worker applies;
- the model bound: EfficientNet-Lite0 fp32 at batch 16, and on CUDA fp16 channels-last
  at several batch sizes; on a CPU, the tagger's runtime at its batch size (ONNX
  Runtime in float32, or OpenVINO in bfloat16 where the CPU has it);
- ``gpufleet submit --wait`` end to end over N photos with one worker, GPU utilisation
  sampled from NVML while its items ran (the worker's start-up apart), top-1 of its
  tags on the labelled photos, and the ratio to the bound that applies:
  ``1 / (1/decode + 1/model)``;
- the worker's own cost per item: the same photos through a model that does nothing;
- on a GPU machine, the CPU path too (``device=cpu``, 4,000 photos) against its own
  bound: how far a CPU-only worker of as many cores gets;
- 64 of the photos enlarged to 12 megapixels, a phone's: the CPU path's decode (at an
  eighth of the size, in the DCT) against nvJPEG's at full size with the worker's crop.

It runs on a CPU-only machine too, skipping what needs CUDA and saying so.
``--compile`` measures only the model, eager against ``torch.compile`` (its compile
takes minutes, so it is a run of its own).

    python benchmarks/gpu.py [--photos 20000] [--samples DIR] [--compile]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    GpuSampler,
    cpu_decode_rate,
    cpu_model_rate,
    default_samples,
    end_to_end,
    labels,
    link_photos,
    threaded_decode_rate,
    timed,
)
from PIL import Image

from gpufleet.config import Settings
from gpufleet.models.bf16_cpu import cpu_has_bf16

CPU_PATH_PHOTOS = 4_000  # on a GPU machine, through the CPU path too: a few seconds
PHONE_PHOTO = (4032, 3024)  # 12 megapixels
PHONE_PHOTOS = 64


def _cuda() -> Any | None:
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def gpu_path(torch: Any, device: str, datas: list[bytes], settings: Settings
             ) -> tuple[Any, list[Any]]:
    """The worker's GPU path (CudaClassifier, on device) and a batch of 256 of the photos
    as its inputs (compressed JPEGs whose header was read)."""
    from gpufleet.models.cuda import CudaClassifier, jpeg_header
    from gpufleet.models.efficientnet import EfficientNetLite0, _torch_model, _weights_path

    reference = EfficientNetLite0(settings, device="cpu")  # for what nvJPEG refuses
    classifier = CudaClassifier(_torch_model(_weights_path()), device=device, top_k=5,
                                cpu_preprocess=reference.cpu_preprocess)
    limit = settings.worker.max_pixels
    return classifier, [jpeg_header(d, max_pixels=limit) for d in (datas * 2)[:256]]


def calls_per_image(torch: Any, classifier: Any, inputs: list[Any]) -> float:
    """torch operator calls an image to decode and crop a batch as the worker does: on a
    GPU each launches kernels, paid in the interpreter's time, which one worker's
    threads share."""
    x = torch.zeros((len(inputs), 3, 224, 224), dtype=classifier.dtype, device=classifier.device)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        classifier._fill(x, inputs)
    return sum(1 for e in profile.events() if e.cpu_parent is None) / len(inputs)


def gpu_decode_rates(torch: Any, classifier: Any, inputs: list[Any]) -> tuple[float, float]:
    """nvJPEG images/s: decode alone (512 per call), and decode + the worker's crop and
    normalisation of a batch of 256 (CudaClassifier's own step)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    batch = [classifier._as_tensor(j) for j in inputs * 2]  # as the worker wraps them
    x = torch.zeros((len(inputs), 3, 224, 224), dtype=classifier.dtype, device="cuda")

    def decode() -> Any:
        return decode_jpeg(batch, mode=ImageReadMode.RGB, device="cuda")

    return (timed(decode, len(batch), 5, torch),
            timed(lambda: classifier._fill(x, inputs), len(inputs), 10, torch))


def gpu_model_rates(torch: Any, settings: Settings) -> dict[str, float]:
    from gpufleet.models.efficientnet import _torch_model, _weights_path

    model = _torch_model(_weights_path()).cuda()
    rates: dict[str, float] = {}
    with torch.inference_mode():
        x = torch.randn(16, 3, 224, 224, device="cuda")
        rates["fp32 batch 16"] = timed(lambda: model(x), 16, 50, torch)
        half = model.half().to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
        for size in (64, 128, 256, 512):
            xh = torch.randn(size, 3, 224, 224, device="cuda").half().to(
                memory_format=torch.channels_last)
            rates[f"fp16 channels-last batch {size}"] = timed(
                lambda xh=xh: half(xh), size, max(5, 4096 // size), torch)
    return rates


def compiled_model_rates(torch: Any, device: str) -> dict[str, float]:
    """The model eager, then through torch.compile: its default mode, and "reduce-overhead"
    (CUDA graphs on a GPU). fp16 channels-last at batch 256 on CUDA; fp32 at batch 16 on
    a CPU, where only the default mode applies. Each compile's seconds are printed."""
    from gpufleet.models.efficientnet import _torch_model, _weights_path

    cuda = device == "cuda"
    size = 256 if cuda else 16
    model = _torch_model(_weights_path()).to(device)
    x = torch.randn(size, 3, 224, 224, device=device)
    if cuda:
        torch.backends.cudnn.benchmark = True
        model = model.half().to(memory_format=torch.channels_last)
        x = x.half().to(memory_format=torch.channels_last)
    sync = torch if cuda else None
    repeat = max(5, 4096 // size) if cuda else 5
    rates: dict[str, float] = {}
    with torch.inference_mode():
        rates[f"eager batch {size}"] = timed(lambda: model(x), size, repeat, sync)
    for mode in ("default", "reduce-overhead") if cuda else ("default",):
        started = time.perf_counter()
        compiled = torch.compile(model, mode=mode)
        with torch.inference_mode():
            compiled(x)  # the compile itself
            print(f"torch.compile mode={mode}: compiled in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            rates[f"torch.compile {mode} batch {size}"] = timed(
                lambda c=compiled: c(x), size, repeat, sync)
    return rates


def cpu_path(root: Path, keys: list[str], files: list[Path], settings: Settings,
             decode: float) -> None:
    """On a GPU machine, the CPU path over its cores against its bound: how far a
    CPU-only worker of as many cores gets (the ONNX export may lack a package there:
    then skipped, saying why, after the GPU's figures)."""
    try:
        model, _ = cpu_model_rate(files, settings)
        e2e = end_to_end(root, root / "photos", keys, model="efficientnet-lite0?device=cpu")
    except Exception as exc:  # a line of the benchmark, not the whole run
        detail = (getattr(exc, "stderr", None) or str(exc) or repr(exc)).strip()
        print(f"the CPU path: skipped ({detail.splitlines()[-1]})")
        return
    bound = 1 / (1 / decode + 1 / model)
    print(f"the CPU path (device=cpu), 1 worker, {len(keys):,} photos: {e2e.rate:9,.0f} img/s, "
          f"{e2e.rate / bound:.2f} of its bound ({bound:,.0f}: model {model:,.0f}, "
          f"decode {decode:,.0f} img/s)")


def _enlarged(path: str) -> bytes:
    """A sample photo enlarged to a phone photo's size, as a quality-90 JPEG."""
    out = io.BytesIO()
    Image.open(path).convert("RGB").resize(PHONE_PHOTO, Image.Resampling.BICUBIC).save(
        out, "JPEG", quality=90)
    return out.getvalue()


def phone_photos(root: Path, files: list[Path], cores: int, torch: Any | None,
                 settings: Settings) -> None:
    """12-megapixel photos, what a company's uploads hold more than the samples do: the
    CPU path decodes them at an eighth of their size (in the DCT), nvJPEG at full size.
    Which is faster for such photos decides where a GPU worker should decode them."""
    try:
        with ProcessPoolExecutor(cores) as pool:
            datas = list(pool.map(_enlarged, [str(f) for f in files[:PHONE_PHOTOS]]))
        folder = root / "phone"
        folder.mkdir()
        paths = [folder / f"{i}.jpg" for i in range(len(datas))]
        for path, data in zip(paths, datas, strict=True):
            path.write_bytes(data)
        cpu = cpu_decode_rate(paths * 2, cores)
        print(f"{len(datas)} phone photos ({PHONE_PHOTO[0]}x{PHONE_PHOTO[1]}): CPU decode + "
              f"preprocess, {cores} processes: {cpu:9,.0f} img/s")
        if torch is None:
            print("  nvJPEG on them: skipped (no CUDA GPU)")
            return
        classifier, inputs = gpu_path(torch, "cuda", datas, settings)
        x = torch.zeros((len(inputs), 3, 224, 224), dtype=classifier.dtype, device="cuda")
        gpu = timed(lambda: classifier._fill(x, inputs), len(inputs), 3, torch)
        print(f"  nvJPEG decode + GPU crop (the worker's step), {len(inputs)} a batch: "
              f"{gpu:9,.0f} img/s")
    except Exception as exc:  # a line of the benchmark, not the whole run
        detail = (str(exc) or repr(exc)).strip()
        print(f"phone photos: skipped ({detail.splitlines()[-1]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=0,
                        help="photos end to end (default: 20,000 on a GPU, 600 on a CPU)")
    parser.add_argument("--samples", type=Path, default=default_samples())
    parser.add_argument("--compile", action="store_true",
                        help="only measure the model eager against torch.compile (minutes)")
    args = parser.parse_args()
    torch = _cuda()
    if args.compile:
        import torch as any_torch

        device = "cuda" if torch is not None else "cpu"
        for name, rate in compiled_model_rates(any_torch, device).items():
            print(f"model on {device}, {name}: {rate:9,.0f} img/s")
        return
    cores = len(os.sched_getaffinity(0))
    settings = Settings.from_env({})
    files = sorted(args.samples.glob("*.JPEG"))
    device = torch.cuda.get_device_name(0) if torch is not None else "no CUDA GPU"
    print(f"{device}, {cores} cores, {len(files)} sample photos")

    cpu_decode = cpu_decode_rate(files * 3, cores)
    print(f"CPU decode + preprocess, {cores} processes: {cpu_decode:9,.0f} img/s")
    threaded = threaded_decode_rate(files * 3, cores)
    print(f"  the same, {cores} threads of one process: {threaded:9,.0f} img/s "
          f"({threaded / cpu_decode:.2f} of the processes')")
    if torch is None:
        print("nvJPEG decode: skipped (no CUDA GPU)")
        model, batch = cpu_model_rate(files, settings)
        runtime = "OpenVINO bf16" if cpu_has_bf16() else "ONNX Runtime fp32"
        print(f"model, {runtime} on the CPU, batch {batch}: {model:9,.0f} img/s")
        decode = cpu_decode
    else:
        classifier, inputs = gpu_path(torch, "cuda", [f.read_bytes() for f in files], settings)
        nvjpeg, nvjpeg_crop = gpu_decode_rates(torch, classifier, inputs)
        print(f"nvJPEG decode, 512 per call:            {nvjpeg:9,.0f} img/s")
        print(f"nvJPEG decode + GPU crop, 256 per call: {nvjpeg_crop:9,.0f} img/s")
        rates = gpu_model_rates(torch, settings)
        for name, rate in rates.items():
            print(f"model, {name}: {rate:9,.0f} img/s")
        model, decode = rates["fp16 channels-last batch 256"], nvjpeg_crop
    try:
        import simplejpeg  # noqa: F401  (the GPU path reads headers with it)
        import torch as any_torch
    except ImportError as exc:
        print(f"torch calls an image on the GPU path: skipped ({exc})")
    else:
        where = "cuda" if torch is not None else "cpu"
        calls = calls_per_image(any_torch, *gpu_path(any_torch, where,
                                                     [f.read_bytes() for f in files], settings))
        print(f"torch calls an image to decode and crop a batch of 256 on the GPU path "
              f"({where}): {calls:.1f}")
    bound = 1 / (1 / decode + 1 / model)
    print(f"bound 1/(1/decode + 1/model):           {bound:9,.0f} img/s")

    count = args.photos or (20_000 if torch is not None else 600)
    truth = labels(args.samples)
    with tempfile.TemporaryDirectory(prefix="gpufleet-gpu-") as tmp:
        root = Path(tmp)
        keys = link_photos(args.samples, root / "photos", count)
        sampler = GpuSampler()
        with sampler.running():
            e2e = end_to_end(root, root / "photos", keys, model="efficientnet-lite0")
        # The same objects through a model that does nothing: the worker's own cost per item.
        noop = end_to_end(root, root / "photos", keys, model="synthetic?item_ms=0")
        right = [e2e.top.get(k) == truth.get(k.split("/", 1)[1]) for k in keys]
        print(f"gpufleet end to end, 1 worker, {count:,} photos: {e2e.rate:9,.0f} img/s "
              f"({e2e.done} done, {e2e.failed} failed; bootstrap {e2e.bootstrap:.1f} s, "
              f"wall {e2e.wall:.1f} s)")
        print(f"  {sampler.summary(e2e.window)}")
        print(f"  top-1 on the labelled photos: {np.mean(right):.3f}")
        print(f"ratio end to end / bound:               {e2e.rate / bound:9.2f}")
        print(f"bookkeeping alone (synthetic?item_ms=0), 1 worker: {noop.rate:9,.0f} items/s "
              f"({noop.done} done)")
        if torch is not None:
            cpu_path(root, keys[:CPU_PATH_PHOTOS], files, settings, cpu_decode)
        phone_photos(root, files, cores, torch, settings)


if __name__ == "__main__":
    main()
