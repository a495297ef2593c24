"""The built-in tagger, end to end on real photos: accuracy matches the reference.

Data: 200 ImageNet photos, one per fifth class, in ``shared/data/imagenet-sample``
next to the repository (override with SAMPLE_IMAGES_DIR). The reference scores
top-1 0.890 and top-5 0.985 on them.
"""

from __future__ import annotations

import csv
import os
import re
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gpufleet.config import Settings
from gpufleet.domain import Tag
from gpufleet.errors import ConfigError, ImageError, ModelError
from gpufleet.models.base import load_tagger
from gpufleet.models.efficientnet import EfficientNetLite0

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Sample:
    file: Path
    wnid: str
    names: str


@pytest.fixture(scope="session")
def samples(sample_dir: Path) -> list[Sample]:
    folder = sample_dir
    labels = folder / "labels.csv"
    with labels.open(newline="", encoding="utf-8") as f:
        rows = [Sample(folder / r["file"], r["wnid"], r["names"]) for r in csv.DictReader(f)]
    assert len(rows) == 200
    return rows


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("gpufleet")
    return Settings(home=home, model_cache=home / "model-cache")


@pytest.fixture(scope="session")
def tagger(settings: Settings) -> Iterator[EfficientNetLite0]:
    # Bootstrapped once per session: the ONNX export is made once into the cache.
    model = EfficientNetLite0(settings, device="cpu")
    model.bootstrap()
    yield model


def tag_all(tagger: EfficientNetLite0, samples: list[Sample]) -> list[list[Tag]]:
    inputs = [tagger.preprocess(s.file.read_bytes()) for s in samples]
    tags: list[list[Tag]] = []
    for start in range(0, len(inputs), tagger.batch_size):
        tags.extend(tagger.infer(inputs[start:start + tagger.batch_size]))
    return tags


def test_accuracy_on_the_imagenet_sample_matches_the_reference(
    tagger: EfficientNetLite0, samples: list[Sample]
) -> None:
    # Given 200 labelled photos / When every one is preprocessed and tagged
    tags = tag_all(tagger, samples)
    # Then the best tag is right for at least 88% and one of five for at least 97%
    pairs = list(zip(tags, samples, strict=True))
    top1 = sum(t[0].id == s.wnid for t, s in pairs) / len(pairs)
    top5 = sum(any(x.id == s.wnid for x in t) for t, s in pairs) / len(pairs)
    assert top1 >= 0.88, f"top-1 {top1:.3f}"
    assert top5 >= 0.97, f"top-5 {top5:.3f}"


def test_tags_are_five_wordnet_ids_with_readable_names_best_first(
    tagger: EfficientNetLite0, samples: list[Sample]
) -> None:
    # Given the tench photo / When it is tagged
    tench = next(s for s in samples if s.wnid == "n01440764")
    [tags] = tagger.infer([tagger.preprocess(tench.file.read_bytes())])
    # Then there are five tags, WordNet ids, first ImageNet names, scores best first
    assert len(tags) == 5
    assert tags[0] == Tag("n01440764", "tench", tags[0].score)
    assert all(re.fullmatch(r"n\d{8}", t.id) and t.label and "," not in t.label for t in tags)
    scores = [t.score for t in tags]
    assert scores == sorted(scores, reverse=True)
    assert 0.5 < scores[0] <= 1.0
    assert sum(scores) <= 1.0001
    assert all(t.score == round(t.score, 4) for t in tags)


def test_preprocess_is_the_same_from_many_threads(
    tagger: EfficientNetLite0, samples: list[Sample]
) -> None:
    # Given 40 photos / When they are preprocessed on 8 threads and on one
    datas = [s.file.read_bytes() for s in samples[:40]]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(tagger.preprocess, datas))
    # Then the model inputs are identical: CHW float32 in [-1, 1]
    for data, x in zip(datas, parallel, strict=True):
        assert x.shape == (3, 224, 224) and x.dtype == np.float32
        assert np.array_equal(x, tagger.preprocess(data))
    assert all(float(x.min()) >= -1.0 and float(x.max()) <= 1.0 for x in parallel)


def test_batches_inferred_side_by_side_tag_as_one_at_a_time(
    tagger: EfficientNetLite0, samples: list[Sample]
) -> None:
    # Given four batches of photos, tagged one after another
    inputs = [tagger.preprocess(s.file.read_bytes()) for s in samples[:64]]
    batches = [inputs[i:i + 16] for i in range(0, 64, 16)]
    expected = [tagger.infer(b) for b in batches]
    # When the four are inferred from four threads at once (the worker's streams)
    with ThreadPoolExecutor(max_workers=4) as pool:
        side_by_side = list(pool.map(tagger.infer, batches))
    # Then every photo gets the same tags
    assert side_by_side == expected


@pytest.mark.parametrize(("cores", "params", "streams", "threads"), [
    (2, {}, 2, 1),  # one batch per core, one thread each
    (16, {}, 4, 4),  # at most four batches (memory), the cores shared among them
    (2, {"streams": "1"}, 1, 2),  # one batch at a time across every core
    (16, {"threads": "16"}, 1, 16),
    (16, {"threads": "2"}, 4, 2),
    (2, {"streams": "3", "threads": "2"}, 3, 2),  # as asked, even past the cores
    (64, {"streams": "16"}, 16, 4),
])
def test_streams_and_threads_share_the_usable_cores(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, cores: int, params: dict[str, str],
    streams: int, threads: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    model = EfficientNetLite0(settings, device="cpu", **params)
    assert (model.streams, model.threads) == (streams, threads)


def test_a_bad_object_fails_as_image_error(tagger: EfficientNetLite0) -> None:
    with pytest.raises(ImageError, match="not a supported image"):
        tagger.preprocess(b"<!DOCTYPE html><title>Access denied</title>")


def test_a_second_worker_reuses_the_cached_export(
    tagger: EfficientNetLite0, settings: Settings, samples: list[Sample]
) -> None:
    # Given the export the session's tagger made
    [export] = list(settings.model_cache.glob("efficientnet-lite0-*.onnx"))
    made = export.stat().st_mtime_ns
    # When another worker, built from its spec, bootstraps on the same cache
    other = load_tagger("efficientnet-lite0?device=cpu&batch_size=8&top_k=3", settings)
    other.bootstrap()
    # Then it loads the same file, rewrites nothing, leaves no temporary file
    assert list(settings.model_cache.iterdir()) == [export]
    assert export.stat().st_mtime_ns == made
    # And it tags as the first one does, with its own parameters
    x = tagger.preprocess(samples[0].file.read_bytes())
    assert other.batch_size == 8
    assert other.infer([x])[0] == tagger.infer([x])[0][:3]


@pytest.mark.parametrize(
    "params", [{"device": "tpu"}, {"top_k": "0"}, {"top_k": "1001"}, {"batch_size": "many"}]
)
def test_bad_parameters_are_refused_when_built(settings: Settings, params: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="efficientnet-lite0"):
        EfficientNetLite0(settings, **params)


def test_a_missing_runtime_says_how_to_install_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given onnxruntime cannot be imported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    # When a CPU tagger bootstraps / Then the error names the extra to install
    with pytest.raises(ModelError, match=r"pip install 'gpufleet\[efficientnet\]'"):
        EfficientNetLite0(settings, device="cpu").bootstrap()


def test_infer_before_bootstrap_is_a_model_error(settings: Settings) -> None:
    with pytest.raises(ModelError, match="before bootstrap"):
        EfficientNetLite0(settings).infer([np.zeros((3, 224, 224), np.float32)])
