"""Model parameters are checked against each model's declaration before it is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.config import Settings
from gpufleet.errors import ConfigError
from gpufleet.models import load_tagger
from gpufleet.models.base import check_spec
from tests.conftest import Home


@pytest.mark.parametrize(("spec", "says"), [
    ("synthetic?item_ms=-5", "item_ms=-5: expected 0 to 60000"),
    ("synthetic?item_ms=nan", "item_ms=nan: expected 0 to 60000"),
    ("synthetic?item_ms=inf", "expected 0 to 60000"),
    ("synthetic?bootstrap_s=3601", "bootstrap_s=3601: expected 0 to 3600"),
    ("synthetic?batch_size=0", "batch_size=0: expected 1 to 4096"),
    ("synthetic?batch_size=2.5", "batch_size='2.5': expected an integer"),
    ("synthetic?colour=blue", "unknown parameter 'colour' (it takes item_ms, bootstrap_s"),
    ("efficientnet-lite0?device=cuda:99", "device='cuda:99': expected auto, cpu, cuda or"),
    ("efficientnet-lite0?device=tpu", "device='tpu'"),
    ("efficientnet-lite0?batch_size=1000000000", "batch_size=1000000000: expected 0 (the"),
    ("efficientnet-lite0?top_k=0", "top_k=0: expected 1 to 1000"),
    ("efficientnet-lite0?threads=257", "threads=257: expected 0 (the usable cores shared"),
    ("efficientnet-lite0?streams=-1", "streams=-1: expected 0 (one per usable core, at most 4)"),
    ("efficientnet-lite0?threads=" + "9" * 5000, "threads='99999"),
])
def test_out_of_range_parameters_are_one_clear_line(spec: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_spec(spec)
    message = str(caught.value)
    assert says in message and "\n" not in message and len(message) < 300


@pytest.mark.parametrize("spec", [
    "synthetic", "synthetic?item_ms=0&bootstrap_s=3600&batch_size=4096",
    "efficientnet-lite0?device=cuda:15&batch_size=0&top_k=1000&threads=256",
    "efficientnet-lite0?streams=256&threads=1",
    "efficientnet-lite0?device=auto", "efficientnet-lite0?device=cpu&batch_size=4096"])
def test_parameters_within_their_ranges_are_accepted(spec: str) -> None:
    assert check_spec(spec) is True


def test_a_plugin_without_a_declaration_is_taken_on_trust() -> None:
    assert check_spec("tests.e2e.plugins:FlakyTagger?heal_file=/x") is False


def test_load_tagger_checks_before_building(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(ConfigError, match=r"^model 'synthetic': item_ms=-5: expected"):
        load_tagger("synthetic?item_ms=-5", settings)
    assert load_tagger("synthetic?item_ms=2", settings).batch_size == 32


def test_the_cli_refuses_a_bad_spec_with_one_line(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    result = home.run("submit", tmp_path / "photos", "--model", "synthetic?item_ms=-5",
                      check=False)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: model 'synthetic': item_ms=-5: expected 0 to 60000"]
