"""Submitting: each submission gets its own input folder, so its job can be told by it."""

from __future__ import annotations

from tests.conftest import write_files
from tests.reliability.cluster import Cluster
from tests.reliability.history import Submission


def submit(cluster: Cluster, name: str, items: int) -> Submission:
    """Start `gpufleet submit` of items new objects; the submitter runs on its own."""
    folder = cluster.inputs / name
    keys = write_files(folder, items)
    manifest = cluster.inputs / f"{name}.txt"
    manifest.write_text("\n".join(keys) + "\n")
    sub = Submission(input=folder.as_uri() + "/", keys=keys)
    sub.proc = cluster.spawn("submit", str(manifest), "--input", sub.input,
                             "--model", cluster.model, log=f"submit-{name}")
    return sub
