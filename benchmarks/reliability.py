"""The long reliability run (issue 11): each nemesis on each backend, its counts as a table.

    python benchmarks/reliability.py --window 60 --items 400 --jobs 3
    python benchmarks/reliability.py --backends embedded --nemeses kill-workers,fill-disk

For every backend and nemesis (and, with --together, all nemeses at once) it
submits jobs, lets real `gpufleet worker` processes run them while the nemesis
strikes for --window seconds, heals, waits up to --bound seconds for every job to
end, and classifies every submitted item: ok, failed (ended with a reason), lost,
duplicated, stale, never-ending, unexpected, not created (its submitter was killed
before the job existed). Exit status 1 if any run found an anomaly.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.checker import ANOMALIES, CATEGORIES
from tests.reliability.cluster import BACKENDS
from tests.reliability.nemeses import NEMESES, make
from tests.reliability.runner import Outcome, Plan, run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--nemeses", default=",".join(NEMESES))
    parser.add_argument("--together", action="store_true", help="also all nemeses at once")
    parser.add_argument("--window", type=float, default=30, help="seconds of faults per run")
    parser.add_argument("--jobs", type=int, default=3, help="submissions before the faults")
    parser.add_argument("--items", type=int, default=300, help="items per submission")
    parser.add_argument("--item-ms", type=float, default=60, help="the model's cost per item")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--bound", type=float, default=300,
                        help="seconds after healing within which every job must end")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    plan = Plan(jobs=args.jobs, items=args.items, item_ms=args.item_ms, workers=args.workers,
                window_s=args.window, bound_s=args.bound, seed=args.seed)
    runs = [[n] for n in args.nemeses.split(",")] + ([["all"]] if args.together else [])
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="gpufleet-reliability-") as scratch:
        for backend in args.backends.split(","):
            for i, names in enumerate(runs):
                nemesis = make(names, items=args.items)
                root = Path(scratch) / f"{backend.replace('+', '-')}-{i}"
                outcome = run(root, backend, nemesis, plan)
                outcomes.append(outcome)
                if len(outcomes) == 1:
                    print(_header(), flush=True)
                print(_row(outcome), flush=True)
                if outcome.verdict is not None and outcome.verdict.anomalies:
                    print("  " + outcome.verdict.describe().replace("\n", "\n  "), flush=True)
    bad = sum(1 for o in outcomes if o.verdict is not None and o.verdict.anomalies)
    ran = sum(1 for o in outcomes if o.verdict is not None)
    print(f"\n{ran} run(s), {len(outcomes) - ran} skipped, {bad} with anomalies "
          f"({', '.join(ANOMALIES)})")
    return 1 if bad else 0


_COLUMNS = ("backend", "nemesis", "strikes", *CATEGORIES, "seconds")


def _header() -> str:
    return " ".join(f"{c:>{_width(c)}}" for c in _COLUMNS)


def _width(column: str) -> int:
    return {"backend": 14, "nemesis": 16}.get(column, max(len(column), 5))


def _row(o: Outcome) -> str:
    if o.verdict is None:
        return f"{o.backend:>14} {o.nemesis:>16} skipped: {o.skipped}"
    cells = [o.backend, o.nemesis, str(o.strikes),
             *(str(o.verdict.counts[c]) for c in CATEGORIES), f"{o.seconds:.0f}"]
    return " ".join(f"{v:>{_width(c)}}" for c, v in zip(_COLUMNS, cells, strict=True))


if __name__ == "__main__":
    raise SystemExit(main())
