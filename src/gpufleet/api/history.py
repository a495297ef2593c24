"""The fleet over time as one tenant may see it: the controller's decisions on its models,
and its own work in buckets (``timeline.py``).

A model's decisions are the fleet's, shared by every tenant whose jobs use that
spec, so they are shown for the tenant's models only, and what they say about
other tenants is taken out: the jobs a decision names as late are the tenant's
own or are replaced, in the reasons too, by "another tenant's job". The
model-wide backlog a decision recorded is left out for the same reason; the
backlog series counts the tenant's own items.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from gpufleet.api.queries import Reads
from gpufleet.api.timeline import bucket_s_for, series
from gpufleet.index import Index
from gpufleet.index.fleet_records import FleetRecords

OTHERS = "another tenant's job"
QUEUE = "(queue)"  # the controller's name for queued work no open job accounts for
DECISIONS_KEPT = 200  # what the index keeps per model (fleet_records._KEEP_DECISIONS)


def fleet_history(index: Index, reads: Reads, tenant: str, models: list[str], *,
                  window_s: float, now: float) -> dict[str, Any]:
    since = now - window_s
    bucket_s = bucket_s_for(window_s)
    records = FleetRecords(index)
    decided: list[dict[str, Any]] = []
    for model in sorted(models):
        decided += [d for d in records.decisions(model, limit=DECISIONS_KEPT)
                    if d["at"] >= since]
    late = {job for d in decided for job in d.get("late") or [] if isinstance(job, str)}
    own = reads.tenant_jobs(tenant, sorted(late)) if late else set()
    others = late - own - {QUEUE}
    with index.transaction() as conn:
        buckets = series(conn, tenant, since=since, until=now, bucket_s=bucket_s)
    return {
        "since": since, "until": now, "bucket_s": bucket_s,
        "decisions": sorted((_shown(d, own, others) for d in decided),
                            key=lambda d: (d["at"], d["model"])),
        "series": [{"at": b.at, "done": b.done, "failed": b.failed,
                    "items_per_s": round((b.done + b.failed) / bucket_s, 3),
                    "backlog": b.backlog, "cost": b.cost} for b in buckets],
    }


def _shown(decision: dict[str, Any], own: set[str], others: set[str]) -> dict[str, Any]:
    workers = [w for w in decision.get("workers") or [] if isinstance(w, dict)]
    return {
        "model": decision["model"], "at": decision["at"], "desired": decision["desired"],
        "actual": len(workers),
        "by_state": dict(Counter(str(w.get("state")) for w in workers)),
        "by_capacity": dict(Counter(str(w.get("capacity")) for w in workers)),
        "start": len(decision.get("start") or []), "drain": len(decision.get("drain") or []),
        "reasons": [_redact(str(r), others) for r in decision.get("reasons") or []],
        "late": sorted(j for j in decision.get("late") or [] if j in own),
        "finish_at": decision.get("finish_at"),
    }


def _redact(reason: str, others: set[str]) -> str:
    if not others:
        return reason
    pattern = "|".join(re.escape(job) for job in sorted(others, key=len, reverse=True))
    return re.sub(rf"(?<![\w-])(?:{pattern})(?![\w-])", OTHERS, reason)
