"""Results as JSONL shards: one object per task instead of one per item (issue 17).

A job submitted with ``--results shards`` has its tasks carry ``results: "shards"``.
The writer holds such a task's outcomes until every item of the delivery has one,
then writes them as one JSONL object, then records their rows in one statement:
the rows of a task are recorded all together or not at all, so a redelivery
either finds the task recorded (and acks it) or runs it whole and rewrites the same
object. Its name is a digest of the items' keys, so a retry writes the same key;
a task split into single items after crashes (worker/delivery.py) writes one shard
per item under their own names. A shard written whose rows were then not recorded
is rewritten by the retry; after a split, an item may also be in the older shard:
the index says which outcome counts.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from gpufleet.domain import ItemStatus
from gpufleet.errors import ItemError
from gpufleet.worker.ledger import Run

if TYPE_CHECKING:
    from gpufleet.worker.writer import Outcome

SHARDS = "shards"
SHARD_FOLDER = "shards/"  # under the job's output: <output>/<job>/shards/<digest>.jsonl


def shard_name(keys: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(keys)).encode("utf-8", "surrogatepass"))
    return f"{SHARD_FOLDER}{digest.hexdigest()[:32]}.jsonl"


class ShardBuffer:
    """Outcomes of shard-mode tasks, held until each task's delivery is complete."""

    def __init__(self) -> None:
        self._held: dict[Run, list[Outcome]] = {}
        self._lock = threading.Lock()

    def hold(self, outcomes: Sequence[Outcome]) -> tuple[list[Outcome], list[list[Outcome]]]:
        """Per-item outcomes to write now, and the shard tasks complete now (each its
        outcomes; a task whose lease is gone is let go at once, to be counted out)."""
        single: list[Outcome] = []
        complete: list[list[Outcome]] = []
        with self._lock:
            for o in outcomes:
                if o.run.task.results != SHARDS:
                    single.append(o)
                    continue
                held = self._held.setdefault(o.run, [])
                held.append(o)
            for run in [r for r, held in self._held.items()
                        if r.released or len(held) >= len(r.keys)]:
                complete.append(self._held.pop(run))
        return single, complete

    def held(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._held.values())


def put_shard(outcomes: list[Outcome], model: str) -> None:
    """Write one task's outcomes as its shard; on failure, every item's fate is the same:
    a key the store refuses fails them all, store trouble retries the whole task."""
    run = outcomes[0].run
    if run.released:
        return
    transient = next((o.transient for o in outcomes if o.transient), None)
    if transient is None and any(o.result is None for o in outcomes):
        transient = "an item of this task has no outcome"
    if transient is not None:  # retried whole: no row of it may be recorded now
        for o in outcomes:
            o.transient = o.transient or transient
        return
    rows = sorted(outcomes, key=lambda o: o.key)
    body = b"".join(o.result.document(model, run.task.preprocess) + b"\n"
                    for o in rows if o.result is not None)
    try:
        run.output.put(shard_name(run.keys), body, content_type="application/x-ndjson")
    except ItemError as exc:
        for o in outcomes:
            assert o.result is not None
            o.result = replace(o.result, status=ItemStatus.FAILED, tags=(),
                               error=f"cannot write the results shard: {exc}")
    except Exception as exc:
        for o in outcomes:
            o.transient = f"write shard of {len(outcomes)} item(s): {exc}"
