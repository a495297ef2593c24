"""One model is one spec: spellings of the same model and parameters are one queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.config import Settings
from gpufleet.errors import ConfigError
from gpufleet.index import Index
from gpufleet.jobs import JobRequest, create_job
from gpufleet.models.base import canonical_spec
from gpufleet.queue import open_queue


@pytest.mark.parametrize(("spellings", "canonical"), [
    (["synthetic?item_ms=3&bootstrap_s=5", "synthetic?bootstrap_s=5&item_ms=3",
      "synthetic?bootstrap_s=5.0&item_ms=3e0"], "synthetic?bootstrap_s=5&item_ms=3"),
    (["efficientnet-lite0", "efficientnet-lite0?device=auto",
      "efficientnet-lite0?top_k=5&threads=0"], "efficientnet-lite0"),
    (["synthetic?item_ms=0", "synthetic?item_ms=0.0&batch_size=32"], "synthetic?item_ms=0"),
    (["efficientnet-lite0?device=cuda:1&batch_size=256",
      "efficientnet-lite0?batch_size=256&device=cuda:1"],
     "efficientnet-lite0?batch_size=256&device=cuda:1"),
    (["synthetic?item_ms=0.50"], "synthetic?item_ms=0.5"),
])
def test_every_spelling_has_one_canonical_form(spellings: list[str], canonical: str) -> None:
    assert {canonical_spec(s) for s in spellings} == {canonical}
    assert canonical_spec(canonical) == canonical  # a fixed point


def test_a_plugin_without_declarations_keeps_its_values_sorted() -> None:
    spec = "tests.e2e.plugins:PoisonTagger?b=2&a=1"
    assert canonical_spec(spec) == "tests.e2e.plugins:PoisonTagger?a=1&b=2"


@pytest.mark.parametrize("spec", ["synthetic?item_ms=fast", "nosuchmodel", "synthetic?x=1"])
def test_a_bad_spec_is_refused_not_canonicalised(spec: str) -> None:
    with pytest.raises(ConfigError):
        canonical_spec(spec)


def test_a_job_and_a_worker_spelled_differently_share_one_queue(tmp_path: Path) -> None:
    settings = Settings.from_env({"GPUFLEET_HOME": str(tmp_path)})
    index = Index(settings.db)
    job = create_job(settings, index, JobRequest(
        items=["a.jpg"], input=tmp_path.as_uri() + "/", model="synthetic?item_ms=3&bootstrap_s=1"))
    assert job.model == "synthetic?bootstrap_s=1&item_ms=3"
    worker_queue = canonical_spec("synthetic?bootstrap_s=1.0&item_ms=3")
    with open_queue(settings.queue, name=worker_queue) as queue:
        assert queue.depth().queued == 1
