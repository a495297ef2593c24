"""Jobs with a preprocessing chain, end to end through the CLI and real worker processes:
filtered items end skipped with their reason, a job of done and skipped items succeeded,
each result says how it was made, and the built-in tagger still tags the photos."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import Home

CHAIN = "exif,min-size=64,max-size=8000,grayscale"


def _photos(sample_dir: Path, folder: Path, n: int) -> dict[str, str]:
    """n labelled sample photos copied into folder: key -> WordNet id."""
    with (sample_dir / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    folder.mkdir(parents=True)
    for r in rows:
        shutil.copy(sample_dir / r["file"], folder / r["file"])
    return {r["file"]: r["wnid"] for r in rows}


def _results(home: Home, job: str) -> dict[str, dict[str, Any]]:
    lines = home.run("results", job, "-f", "jsonl").stdout.splitlines()
    return {row["key"]: row for row in map(json.loads, lines)}


def test_a_filter_skips_with_its_reason_and_the_job_still_succeeds(
        home: Home, tmp_path: Path, sample_dir: Path) -> None:
    # Given three photos and an icon too small for the chain's min-size
    folder = tmp_path / "in"
    photos = _photos(sample_dir, folder, 3)
    Image.new("RGB", (32, 32), "red").save(folder / "icon.png")
    # When the folder is submitted with a chain and waited for
    summary = home.json("submit", folder, "--model", "synthetic?item_ms=1",
                        "--preprocess", CHAIN, "--wait")
    # Then the job succeeded: three done, the icon skipped (not failed)
    assert summary["state"] == "succeeded"
    assert (summary["done"], summary["skipped"], summary["failed"]) == (3, 1, 0)
    assert summary["preprocess"] == CHAIN
    rows = _results(home, summary["job"])
    assert (rows["icon.png"]["status"], rows["icon.png"]["error"]) == (
        "skipped", "32x32 is under min-size=64")
    # And each result object says how its input was made
    out = home.path / "buckets/results" / summary["job"]
    for key in [*photos, "icon.png"]:
        doc = json.loads((out / f"{key}.json").read_text())
        assert doc["preprocess"] == CHAIN
    assert json.loads((out / "icon.png.json").read_text())["status"] == "skipped"
    # And the table of jobs shows the skipped count
    assert "skipped" in home.run("status").stdout


def test_a_bad_chain_is_refused_at_submit_with_one_line(home: Home, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"x")
    refused = home.run("submit", tmp_path / "in", "--preprocess", "exif,sharpen=2",
                       "--model", "synthetic", check=False)
    assert refused.returncode != 0
    # (one message, which the console may wrap to its width; no traceback)
    assert refused.stderr.startswith("error: unknown preprocess step 'sharpen'")
    assert "Traceback" not in refused.stderr
    assert home.index().jobs() == []  # nothing recorded, nothing enqueued


@pytest.mark.slow
def test_the_built_in_tagger_tags_photos_through_a_chain(home: Home, tmp_path: Path,
                                                         sample_dir: Path) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    # Given eight labelled photos
    labels = _photos(sample_dir, tmp_path / "in", 8)
    # When they go through a typical chain to EfficientNet-Lite0
    chain = "exif,min-size=64,max-size=8000,autocontrast=1"
    summary = home.json("submit", tmp_path / "in", "--model", "efficientnet-lite0?device=cpu",
                        "--preprocess", chain, "--wait")
    # Then every photo is tagged, and mostly right (the reference's top-1 is 0.89)
    assert (summary["state"], summary["done"]) == ("succeeded", 8)
    rows = _results(home, summary["job"])
    right = sum(rows[k]["tags"][0]["id"] == wnid for k, wnid in labels.items())
    assert right >= 6, f"{right} of 8 right"
