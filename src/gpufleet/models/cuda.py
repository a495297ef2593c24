"""A classifier on a CUDA GPU, fed the way a GPU wants: whole batches, never a pixel on the host.

- ``preprocess`` (CPU threads, per item) reads only the JPEG header (simplejpeg,
  in C): the pixel limit is checked there, before any decode, and a JPEG nvJPEG
  can decode (grey or YCbCr) travels on as its compressed bytes. Anything else
  (PNG, WebP, TIFF, BMP, CMYK JPEGs, a JPEG whose header libjpeg cannot read, a
  long strip whose resized copy would be huge) is decoded on the CPU by the
  reference path, or fails there with its reason.
- ``infer`` (one of ``streams`` threads, each on its own CUDA stream so one
  batch's decode and copies overlap another's compute) decodes the batch's JPEGs
  with nvJPEG in one call (``torchvision.io.decode_jpeg``; in several for big
  photos, so that one call decodes a bounded number of pixels and the GPU's memory
  holds whatever the photos' size), then, for each group
  of images of one size and EXIF orientation (read with the header), turns them
  upright, resizes and crops them on the GPU like the reference (shorter side
  to 256, bilinear with antialiasing, centre 224) and normalises them, in a few
  calls a group, and runs the network in half precision (or the ``precision``
  asked for), channels-last. Softmax and top-k run on the GPU too: only k scores
  and indices per image come back.
  A JPEG that nvJPEG refuses (progressive oddities, truncated data) is retried
  alone on the GPU, then on the CPU, then fails as that item's error.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpufleet.errors import DeviceLost, ImageError, ItemError, ModelError
from gpufleet.imaging.photos import jpeg_orientation
from gpufleet.models.centre_crop import CROP, resized_crop

_NVJPEG_COLOURS = ("Gray", "YCbCr")
# Above this, a photo's resized copy is the CPU path's to make: that resamples only the
# region under the crop (a strip 40 pixels wide and 30,000 long would be 49 MP resized).
_MAX_RESIZED_PIXELS = 4_000_000
_GROUP_PIXELS = 32_000_000  # resized in one call at most: 12 bytes a pixel as float
# Decoded in one nvJPEG call at most (3 bytes a pixel: 384 MB). A batch of 256 ordinary
# photos is one call; 256 phone photos of 12 megapixels would be 9 GB at once per
# stream, past a 16 GB T4 with two streams, and 256 at the 120-megapixel limit 92 GB.
_DECODE_PIXELS = 128_000_000
_SHAPE_STEP = 32  # batches are padded to a multiple of this: few shapes, cuDNN plans reused


@dataclass(frozen=True, slots=True)
class EncodedJpeg:
    """A JPEG whose header passed the checks, to be decoded on the GPU."""

    data: bytes
    width: int
    height: int
    orientation: int = 1  # EXIF: nvJPEG ignores it, so it is applied after decoding


def jpeg_header(data: bytes, *, max_pixels: int) -> EncodedJpeg | None:
    """The JPEG as GPU input, None if nvJPEG should not get it; ImageError over the limit."""
    import simplejpeg  # the [gpu] extra: a header read in C, a few microseconds

    try:
        height, width, colour, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None  # let the CPU path read it and give the reason
    if width * height > max_pixels:
        raise ImageError(f"image declares {width}x{height} = {width * height:,} pixels, "
                         f"over the limit of {max_pixels:,}")
    if colour not in _NVJPEG_COLOURS:
        return None
    new_w, new_h, _, _ = resized_crop(width, height)
    if new_w * new_h > _MAX_RESIZED_PIXELS:
        return None  # a long strip: the CPU path resamples only the region under the crop
    return EncodedJpeg(data, width, height, jpeg_orientation(data))


class CudaClassifier:
    """Runs an ImageNet-style classifier on one GPU; see the module's docstring.

    ``device="cpu"`` runs the very same steps in float32 on the CPU, libjpeg-turbo
    decoding there (torchvision's, or simplejpeg's where torchvision is missing): slow,
    for tests on machines without a GPU, never for work.
    """

    streams = 2

    def __init__(self, model: Any, *, device: str, top_k: int,
                 cpu_preprocess: Callable[[bytes], np.ndarray[Any, Any]],
                 precision: str = "auto") -> None:
        import torch

        self.torch: Any = torch  # untyped on purpose: the model and kernels are dynamic
        self.device = torch.device(device)
        self.on_gpu = self.device.type == "cuda"
        if self.on_gpu and not torch.cuda.is_available():
            raise ModelError(f"device={device} but PyTorch sees no CUDA GPU")
        self.top_k = top_k
        self.cpu_preprocess = cpu_preprocess
        if precision == "auto":  # the CPU (tests) has no fast float16
            precision = "fp16" if self.on_gpu else "fp32"
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16,
                      "fp32": torch.float32}[precision]
        torch.backends.cudnn.benchmark = True  # padded batch shapes repeat: plans pay off
        self.model = model.to(self.device, self.dtype).to(
            memory_format=torch.channels_last).eval()
        self._local = threading.local()
        # torchvision 0.29 deprecates its decoders for TorchCodec's; they still work, and
        # the GPU images in use (0.26) have no TorchCodec: say it once, not per batch.
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message="The image decoding and encoding capabilities")
        # The JPEGs' bytes are wrapped as they are, read-only (see _as_tensor), about which
        # torch warns once per process: that once, here, silently.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            torch.frombuffer(b"\xff", dtype=torch.uint8)
        try:
            from torchvision.io import ImageReadMode, decode_jpeg
        except ImportError as exc:
            if self.on_gpu:
                raise ModelError(f"GPU decoding needs torchvision ({exc}): "
                                 "pip install 'gpufleet[gpu]'") from exc
            # On the CPU, torchvision's decoder is libjpeg-turbo: simplejpeg is the same
            # library, and installs beside the CPU torch where PyPI's torchvision (a
            # CUDA build) does not load. So the tests run these steps on any machine.
            self._decode_jpeg: Callable[..., list[Any]] = self._libjpeg_decode
            self._rgb: Any = None
        else:
            self._decode_jpeg, self._rgb = decode_jpeg, ImageReadMode.RGB

    def warm_up(self, batch_size: int) -> None:
        """The smallest and the largest padded shape (cuDNN's plans for them) before work."""
        if not self.on_gpu:
            return  # no plans to choose
        x = self.torch.zeros((1, 3, CROP, CROP), dtype=self.torch.float32).numpy()
        for n in sorted({min(batch_size, _SHAPE_STEP), batch_size}):
            self.infer([x[0]] * n)

    def _stream(self) -> Any:
        """This thread's own CUDA stream (nothing to enter on the CPU)."""
        if not self.on_gpu:
            return contextlib.nullcontext()
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = self.torch.cuda.Stream(self.device)
        return self.torch.cuda.stream(stream)

    def infer(self, batch: Sequence[Any]) -> list[tuple[list[int], list[float]] | ItemError]:
        """Top-k class indices and probabilities per input, or that input's error;
        DeviceLost if the batch failed and the GPU can run nothing more."""
        try:
            return self._infer(batch)
        except Exception as exc:
            lost = self._lost()
            if lost is not None:
                raise DeviceLost(f"the GPU ({self.device}) can run nothing more: {lost}") from exc
            raise  # the batch's own fault (out of memory, say): its tasks are retried

    def _lost(self) -> str | None:
        """Why the GPU can run nothing more, None if it still runs. A CUDA fault (an
        illegal address, an uncorrectable ECC error, a GPU fallen off the bus) leaves the
        process's context broken: every later call fails the same way, batch after batch,
        until a new process starts."""
        if not self.on_gpu:
            return None
        try:
            self.torch.cuda.synchronize(self.device)
            self.torch.ones(1, device=self.device).add_(1).item()
        except Exception as exc:
            return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None

    def _infer(self, batch: Sequence[Any]) -> list[tuple[list[int], list[float]] | ItemError]:
        torch = self.torch
        with torch.inference_mode(), self._stream():
            # On a GPU the network sees a multiple of _SHAPE_STEP rows (zeros past the
            # inputs): few shapes, so cuDNN's plans, chosen per shape, are reused. The CPU
            # (tests) has no plans to reuse, and would only compute the padding.
            step = _SHAPE_STEP if self.on_gpu else 1
            padded = step * math.ceil(len(batch) / step)
            x = torch.empty((padded, 3, CROP, CROP), dtype=self.dtype, device=self.device,
                            memory_format=torch.channels_last)
            rows, errors = self._fill(x, batch)
            x[len(rows):].zero_()  # rows no input filled: run, never read
            logits = self.model(x)[:len(rows)].float()  # the padding's rows never leave
            scores, classes = torch.softmax(logits, dim=1).topk(self.top_k, dim=1)
            scores, classes = scores.cpu().tolist(), classes.cpu().tolist()
        best: dict[int, tuple[list[int], list[float]] | ItemError] = dict(errors)
        best.update((i, (classes[row], scores[row])) for row, i in enumerate(rows))
        return [best[i] for i in range(len(batch))]

    def _fill(self, x: Any, batch: Sequence[Any]) -> tuple[list[int], dict[int, ItemError]]:
        """Write the inputs' normalised 224x224 crops into x's first rows; returns the
        input each row holds, and the inputs that failed.

        Rows go in runs, a group of photos of one size and orientation at a time, then
        the CPU-preprocessed ones together: a slice and one copy (converting to the
        network's precision) a run, and one normalisation for all the GPU's crops, where
        per-input rows would cost an index tensor and a scatter a group.
        """
        errors: dict[int, ItemError] = {}
        on_host: dict[int, np.ndarray[Any, Any]] = {}  # preprocessed by the CPU path
        rows: list[int] = []
        jpegs = [(i, item) for i, item in enumerate(batch) if isinstance(item, EncodedJpeg)]
        for piece in _by_pixels(jpegs, _DECODE_PIXELS):
            self._crop_decoded(x, rows, piece, errors, on_host)
        if rows:
            _normalise_(x[:len(rows)])
        on_host.update((i, item) for i, item in enumerate(batch)
                       if not isinstance(item, EncodedJpeg))
        if on_host:  # one pinned buffer, one asynchronous copy
            host = self.torch.from_numpy(np.stack(list(on_host.values())))
            if self.on_gpu:
                host = host.pin_memory()
            x[len(rows):len(rows) + len(host)].copy_(host, non_blocking=True)
            rows.extend(on_host)
        return rows, errors

    def _crop_decoded(self, x: Any, rows: list[int], jpegs: list[tuple[int, EncodedJpeg]],
                      errors: dict[int, ItemError],
                      on_host: dict[int, np.ndarray[Any, Any]]) -> None:
        """Decode these JPEGs (the batch's index, the JPEG) in one call and write their
        crops into x's next rows, appending to rows; refused ones go to errors or on_host.
        The decoded images are let go on return, before the next piece is decoded."""
        same_shape: dict[tuple[int, ...], list[tuple[int, Any]]] = defaultdict(list)
        decoded = self._decode([jpeg for _, jpeg in jpegs])
        for (i, jpeg), image in zip(jpegs, decoded, strict=True):
            if isinstance(image, ItemError):
                errors[i] = image
            elif isinstance(image, np.ndarray):  # nvJPEG refused it: the CPU did it
                on_host[i] = image
            else:
                same_shape[(*image.shape, jpeg.orientation)].append((i, image))
        for (_, height, width, orientation), group in same_shape.items():
            # Photos of one size (one camera's) are resized together: a few kernel
            # launches a group, not a few an image, each launch costing the interpreter.
            per_call = max(1, _GROUP_PIXELS // (height * width))
            for start in range(0, len(group), per_call):
                piece = group[start:start + per_call]
                images = self.torch.stack([image for _, image in piece])
                crops = _resize_crop(self.torch, orient(images, orientation))
                x[len(rows):len(rows) + len(piece)].copy_(crops)
                rows.extend(i for i, _ in piece)

    def _decode(self, jpegs: list[EncodedJpeg]) -> list[Any]:
        """Decoded images on the GPU; a CPU-preprocessed array or an error for a refused one."""
        if not jpegs:
            return []
        if self.on_gpu:
            # torchvision's decoder takes its images' memory on this thread's stream but
            # writes them from a stream of its own, without waiting for this one (and
            # nvJPEG's hardware engine keeps no stream order either): a block freed here
            # that queued kernels still read, the previous piece's photos being resized,
            # could be handed to it and overwritten under them. Those kernels finish first.
            self.torch.cuda.current_stream(self.device).synchronize()
        try:
            return list(self._decode_jpeg([self._as_tensor(j) for j in jpegs], mode=self._rgb,
                                          device=self.device))
        except RuntimeError:
            if len(jpegs) == 1:
                return [self._on_cpu(jpegs[0])]
            return [image for j in jpegs for image in self._decode([j])]

    def _libjpeg_decode(self, tensors: list[Any], *, mode: Any, device: Any) -> list[Any]:
        """``decode_jpeg(tensors, mode=RGB, device="cpu")`` as torchvision does it: CHW
        uint8 images, RuntimeError for a JPEG it cannot decode whole."""
        import simplejpeg

        images = []
        for tensor in tensors:
            try:
                rgb = simplejpeg.decode_jpeg(tensor.numpy().tobytes(), colorspace="RGB")
            except ValueError as exc:
                raise RuntimeError(f"cannot decode a JPEG: {exc}") from exc
            images.append(self.torch.from_numpy(rgb).permute(2, 0, 1))
        return images

    def _as_tensor(self, jpeg: EncodedJpeg) -> Any:
        # The bytes themselves, not a copy (8 us a sample photo, 28 a 12-megapixel one,
        # holding the interpreter lock): the decoder only reads them.
        return self.torch.frombuffer(jpeg.data, dtype=self.torch.uint8)

    def _on_cpu(self, jpeg: EncodedJpeg) -> np.ndarray[Any, Any] | ItemError:
        try:
            return self.cpu_preprocess(jpeg.data)
        except ItemError as exc:
            return exc


def _by_pixels(jpegs: list[tuple[int, EncodedJpeg]],
               limit: int) -> list[list[tuple[int, EncodedJpeg]]]:
    """The JPEGs in order, in pieces of at most limit pixels (as their headers declare)
    each; one bigger than that alone."""
    pieces: list[list[tuple[int, EncodedJpeg]]] = []
    pixels = 0
    for entry in jpegs:
        size = entry[1].width * entry[1].height
        if not pieces or pixels + size > limit:
            pieces.append([])
            pixels = 0
        pieces[-1].append(entry)
        pixels += size
    return pieces


def orient(images: Any, orientation: int) -> Any:
    """NCHW images turned upright by their EXIF orientation, as Pillow's exif_transpose."""
    if orientation == 2:
        return images.flip(3)
    if orientation == 3:
        return images.flip([2, 3])
    if orientation == 4:
        return images.flip(2)
    if orientation == 5:
        return images.transpose(2, 3)
    if orientation == 6:
        return images.rot90(-1, (2, 3))
    if orientation == 7:
        return images.transpose(2, 3).flip([2, 3])
    if orientation == 8:
        return images.rot90(1, (2, 3))
    return images


def _resize_crop(torch: Any, images: Any) -> Any:
    """The reference crop of NCHW uint8 images of one size on the GPU, as Nx3x224x224
    float in 0..255: the shorter side resized to 256 (bilinear, antialiased as Pillow's
    filter is when it shrinks), then the centre 224. (A strip whose resized copy would
    be huge never comes here: ``jpeg_header`` leaves it to the CPU path.)
    """
    *_, height, width = images.shape
    new_w, new_h, left, top = resized_crop(width, height)
    resized = torch.nn.functional.interpolate(images.float(), size=(new_h, new_w),
                                              mode="bilinear", antialias=True,
                                              align_corners=False)
    return resized[:, :, top:top + CROP, left:left + CROP]


def _normalise_(x: Any) -> Any:
    """(x - 127) / 128 in place: the reference's scaling of 0..255 to about -1..1."""
    return x.sub_(127.0).div_(128.0)
