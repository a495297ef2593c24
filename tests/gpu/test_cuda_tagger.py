"""The GPU path: nvJPEG decoding in batches, crops on the device, per-item fallbacks.

Run on a CUDA GPU in half precision; without one (torchvision installed) the same
classifier runs on the CPU in float32, so its logic is tested everywhere it can be.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpufleet.config import Settings, WorkerSettings
from gpufleet.domain import Tag
from gpufleet.errors import ImageError, ItemError
from gpufleet.models.cuda import CudaClassifier, EncodedJpeg, jpeg_header
from gpufleet.models.efficientnet import EfficientNetLite0, _imagenet_classes, _torch_model
from gpufleet.models.efficientnet import _weights_path as weights

LIMIT = 120_000_000


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> EfficientNetLite0:
    home = tmp_path_factory.mktemp("gpufleet")
    tagger = EfficientNetLite0(Settings(home=home, model_cache=home / "cache"), device="cpu")
    tagger.bootstrap()
    return tagger


@pytest.fixture(scope="module")
def classifier(device: str, reference: EfficientNetLite0) -> CudaClassifier:
    gpu = CudaClassifier(_torch_model(weights()), device=device, top_k=5,
                         cpu_preprocess=reference.cpu_preprocess)
    gpu.warm_up(32)
    return gpu


def _prepare(data: bytes, reference: EfficientNetLite0) -> object:
    return jpeg_header(data, max_pixels=LIMIT) or reference.cpu_preprocess(data)


def _labelled(sample_dir: Path) -> list[tuple[bytes, str]]:
    with (sample_dir / "labels.csv").open(newline="", encoding="utf-8") as f:
        return [((sample_dir / r["file"]).read_bytes(), r["wnid"]) for r in csv.DictReader(f)]


def _encode(fmt: str, mode: str = "RGB", **save: object) -> bytes:
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 255, (300, 400, 3), np.uint8)).convert(mode)
    out = io.BytesIO()
    im.save(out, fmt, **save)
    return out.getvalue()


def test_accuracy_matches_the_reference(classifier: CudaClassifier,
                                        reference: EfficientNetLite0, sample_dir: Path) -> None:
    # Given 200 labelled photos, each passed on as compressed JPEG
    samples = _labelled(sample_dir)
    inputs = [jpeg_header(data, max_pixels=LIMIT) for data, _ in samples]
    assert all(isinstance(x, EncodedJpeg) for x in inputs)
    # When they are decoded and tagged in batches on the device
    ids, _ = _imagenet_classes()
    best = [b for start in range(0, 200, 64) for b in classifier.infer(inputs[start:start + 64])]
    # Then top-1 and top-5 are the reference's (0.890 and 0.985), within a point
    assert all(isinstance(b, tuple) for b in best)
    wnids = [wnid for _, wnid in samples]
    top1 = np.mean([ids[b[0][0]] == w for b, w in zip(best, wnids, strict=True)])  # type: ignore[index]
    top5 = np.mean([w in {ids[c] for c in b[0]} for b, w in zip(best, wnids, strict=True)])  # type: ignore[index]
    assert top1 >= 0.88, top1
    assert top5 >= 0.97, top5


def test_every_format_in_one_batch_gets_its_own_outcome(
        classifier: CudaClassifier, reference: EfficientNetLite0, sample_dir: Path) -> None:
    # Given one batch mixing a photo, a PNG, a WebP, a CMYK JPEG, a progressive JPEG and
    # a JPEG cut after its header
    photo = sorted(sample_dir.glob("*.JPEG"))[0].read_bytes()
    datas = [photo, _encode("PNG"), _encode("WEBP"), _encode("JPEG", "CMYK"),
             _encode("JPEG", progressive=True), photo[: len(photo) // 3]]
    inputs = [_prepare(d, reference) for d in datas]
    assert isinstance(inputs[0], EncodedJpeg) and not isinstance(inputs[3], EncodedJpeg)
    # When it is tagged
    out = classifier.infer(inputs)
    # Then every readable image has its five best classes, and the cut one is tagged from
    # what was decoded, or fails alone with its reason
    assert len(out) == len(datas)
    for result in out[:5]:
        assert isinstance(result, tuple) and len(result[0]) == 5
    assert isinstance(out[5], (tuple, ItemError))
    # And the photo's tags are those it gets alone
    alone = classifier.infer([inputs[0]])[0]
    assert isinstance(alone, tuple) and alone[0][0] == out[0][0][0]  # type: ignore[index]


def test_the_device_and_the_reference_agree_on_the_best_tag(
        classifier: CudaClassifier, reference: EfficientNetLite0, sample_dir: Path) -> None:
    samples = _labelled(sample_dir)[:48]
    device = classifier.infer([jpeg_header(d, max_pixels=LIMIT) for d, _ in samples])
    cpu = reference.infer([reference.cpu_preprocess(d) for d, _ in samples])
    ids, _ = _imagenet_classes()
    agree = np.mean([ids[g[0][0]] == c[0].id  # type: ignore[index,union-attr]
                     for g, c in zip(device, cpu, strict=True)])
    assert agree >= 0.95, agree


@pytest.mark.usefixtures("cuda_only")
def test_a_gpu_worker_batches_256_on_two_streams(tmp_path: Path, sample_dir: Path) -> None:
    tagger = EfficientNetLite0(Settings(home=tmp_path), device="cuda")
    tagger.bootstrap()
    assert tagger.backend.startswith("torch:cuda")
    assert tagger.batch_size == 256 and tagger.streams == 2
    photo = sorted(sample_dir.glob("*.JPEG"))[0].read_bytes()
    [tags] = tagger.infer([tagger.preprocess(photo)])
    assert isinstance(tags, list) and len(tags) == 5 and isinstance(tags[0], Tag)


@pytest.mark.usefixtures("cuda_only")
def test_the_pixel_limit_holds_before_the_gpu_sees_the_bytes(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, worker=WorkerSettings(max_pixels=10_000))
    tagger = EfficientNetLite0(settings, device="cuda")
    tagger.bootstrap()
    with pytest.raises(ImageError, match="over the limit"):
        tagger.preprocess(_encode("JPEG"))


def test_photos_of_one_size_are_cropped_together_as_each_alone(
        classifier: CudaClassifier, reference: EfficientNetLite0, sample_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given photos of which several share a size, one of them also stored on its side
    photos = [f.read_bytes() for f in sorted(sample_dir.glob("*.JPEG"))[:12]]
    turned = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(io.BytesIO(photos[0])).save(turned, "JPEG", exif=exif.tobytes(), quality=95)
    inputs = [jpeg_header(d, max_pixels=LIMIT) for d in [*photos, turned.getvalue()]]
    sizes = [(j.width, j.height) for j in inputs if isinstance(j, EncodedJpeg)]
    assert len(set(sizes)) < len(sizes)
    # When they are tagged in one batch, in groups of one size at most two at a time,
    # and each alone
    monkeypatch.setattr("gpufleet.models.cuda._GROUP_PIXELS", 2 * max(w * h for w, h in sizes))
    together = classifier.infer(inputs)
    alone = [classifier.infer([j])[0] for j in inputs]
    # Then each photo gets the same classes, with the same scores to rounding
    for a, b in zip(together, alone, strict=True):
        assert isinstance(a, tuple) and isinstance(b, tuple)
        assert a[0] == b[0] and np.allclose(a[1], b[1], atol=2e-3)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_a_precision_asked_for_is_the_one_the_network_runs_in(
        device: str, reference: EfficientNetLite0, classifier: CudaClassifier,
        sample_dir: Path, precision: str) -> None:
    import torch

    if precision == "fp32" and device == "cpu":
        pytest.skip("float32 is the CPU's default already")
    # Given the GPU path asked for another precision than its default
    other = CudaClassifier(_torch_model(weights()), device=device, top_k=5,
                           cpu_preprocess=reference.cpu_preprocess, precision=precision)
    assert other.dtype == {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    assert next(other.model.parameters()).dtype == other.dtype
    # When it tags photos / Then its best tags are the default's, nearly all
    inputs = [jpeg_header(f.read_bytes(), max_pixels=LIMIT)
              for f in sorted(sample_dir.glob("*.JPEG"))[:32]]
    mine, default = other.infer(inputs), classifier.infer(inputs)
    same = sum(a[0][0] == b[0][0] for a, b in zip(mine, default, strict=True))  # type: ignore[index]
    assert same >= 30, same


def test_batches_from_two_threads_at_once_tag_as_one_at_a_time(
        classifier: CudaClassifier, sample_dir: Path) -> None:
    # Given four batches of photos, tagged one after another
    inputs = [jpeg_header(f.read_bytes(), max_pixels=LIMIT)
              for f in sorted(sample_dir.glob("*.JPEG"))[:32]]
    batches = [inputs[i:i + 8] for i in range(0, 32, 8)]
    expected = [classifier.infer(b) for b in batches]
    # When they are tagged from two threads at once (a GPU worker's two streams)
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(classifier.infer, batches))
    # Then every photo gets the same classes, with the same scores to rounding
    for a_batch, b_batch in zip(together, expected, strict=True):
        for a, b in zip(a_batch, b_batch, strict=True):
            assert isinstance(a, tuple) and isinstance(b, tuple)
            assert a[0] == b[0] and np.allclose(a[1], b[1], atol=2e-3)


def test_big_photos_are_decoded_a_bounded_number_of_pixels_at_a_time(
        classifier: CudaClassifier, sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch of photos, and a decode call bounded to about two of them
    inputs = [jpeg_header(f.read_bytes(), max_pixels=LIMIT)
              for f in sorted(sample_dir.glob("*.JPEG"))[:12]]
    jpegs = [j for j in inputs if isinstance(j, EncodedJpeg)]
    expected = classifier.infer(inputs)  # one call: the bound is far above the batch
    bound = 2 * max(j.width * j.height for j in jpegs)
    monkeypatch.setattr("gpufleet.models.cuda._DECODE_PIXELS", bound)
    calls: list[int] = []
    decode = classifier._decode_jpeg

    def counted(tensors: list[object], **kwargs: object) -> list[object]:
        images = decode(tensors, **kwargs)
        calls.append(sum(image.shape[1] * image.shape[2] for image in images))  # type: ignore[attr-defined]
        return images

    monkeypatch.setattr(classifier, "_decode_jpeg", counted)
    # When they are tagged
    tagged = classifier.infer(inputs)
    # Then no decode call held more pixels than the bound, several calls took them all,
    # and every photo gets the same classes, with the same scores to rounding
    assert len(calls) > 1 and max(calls) <= bound
    assert sum(calls) == sum(j.width * j.height for j in jpegs)
    for a, b in zip(tagged, expected, strict=True):
        assert isinstance(a, tuple) and isinstance(b, tuple)
        assert a[0] == b[0] and np.allclose(a[1], b[1], atol=2e-3)


@pytest.mark.usefixtures("cuda_only")
def test_a_decode_never_writes_memory_that_queued_kernels_still_read(
        classifier: CudaClassifier, sample_dir: Path) -> None:
    import torch

    # Given, on the classifier's stream, blocks of the photos' decoded size that kernels
    # queued behind long work still read when they are freed (as the previous piece's
    # photos are while they are resized)
    jpegs = [j for f in sorted(sample_dir.glob("*.JPEG"))[:16]
             if isinstance(j := jpeg_header(f.read_bytes(), max_pixels=LIMIT), EncodedJpeg)]
    with torch.inference_mode(), classifier._stream():
        blocks = [torch.full((3, j.height, j.width), 7, dtype=torch.uint8, device="cuda")
                  for j in jpegs]
        torch.cuda.current_stream().synchronize()
        busy = torch.rand(4096, 4096, device="cuda")
        for _ in range(20):  # tens of milliseconds of work ahead of the reads
            busy = torch.tanh(busy @ busy)
        sums = [block.sum(dtype=torch.int64) for block in blocks]
        del blocks
        # When the photos are decoded on that stream (its allocator may hand the decoder
        # those very blocks)
        classifier._decode(jpegs)
        # Then the kernels queued before the decode read what was there before it
        read = [int(total) for total in sums]
    assert read == [7 * 3 * j.height * j.width for j in jpegs]


# In a process of its own: a device-side assert breaks the CUDA context for good.
_BROKEN_CONTEXT = textwrap.dedent("""
    import numpy as np
    import torch

    from gpufleet.errors import DeviceLost
    from gpufleet.models.cuda import CudaClassifier

    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    gpu = CudaClassifier(net, device="cuda", top_k=1,
                         cpu_preprocess=lambda data: np.zeros((3, 224, 224), np.float32))
    inputs = [np.zeros((3, 224, 224), np.float32)] * 4
    print("before:", gpu.infer(inputs)[0])
    try:  # an index past the end, checked on the device: a device-side assert
        torch.zeros(4, device="cuda")[torch.tensor([10], device="cuda")].sum().item()
    except RuntimeError:
        pass
    try:
        gpu.infer(inputs)
    except DeviceLost as exc:
        print("lost:", exc)
""")


@pytest.mark.usefixtures("cuda_only")
def test_a_broken_cuda_context_is_a_lost_device() -> None:
    # Given a classifier on the GPU, and then a fault that breaks the process's CUDA context
    # When a batch is run
    ran = subprocess.run([sys.executable, "-c", _BROKEN_CONTEXT], capture_output=True,
                         text=True, timeout=120)
    # Then the classifier ran before, and says its device is lost after, with CUDA's reason
    assert ran.returncode == 0, ran.stderr
    before, lost = ran.stdout.strip().splitlines()[-2:]
    assert before.startswith("before: ([0], [0.333"), ran.stdout  # three equal logits
    assert lost.startswith("lost: the GPU (cuda) can run nothing more: ") and "CUDA" in lost, (
        ran.stdout)
