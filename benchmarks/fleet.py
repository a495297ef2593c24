"""The fleet from zero and back, with real processes, and what one controller tick costs.

    python benchmarks/fleet.py [--items 6000] [--item-ms 10] [--bootstrap 5] [--deadline 40]

1. A controller (local provider) watches an inbox; a manifest of --items
   synthetic items lands. Prints when the job was made, the first worker
   launched, the first item done, the job done and the fleet back at zero,
   the fleet size the controller chose next to the analytical optimum (the
   least n with bootstrap + items x item time / n <= deadline), and the
   makespan next to that optimum's.
2. One tick (inbox, backlog, measurements, policy, provider) in-process on an
   index holding a job of --tick-items pending items, next to a bare
   COUNT(*) of the same items: the ratio is the controller's overhead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from gpufleet.autoscale.controller import Controller, Estimates
from gpufleet.autoscale.policy import PolicyConfig
from gpufleet.autoscale.providers.base import open_provider, pool_name
from gpufleet.config import Settings
from gpufleet.index import Index
from gpufleet.index.fleet_records import FleetRecords
from gpufleet.index.schema import items
from gpufleet.jobs import enqueue_job


def wait(predicate: object, timeout_s: float = 600) -> float:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.1)
    return time.time()


def from_zero(args: argparse.Namespace, home: Path) -> None:
    model = f"synthetic?item_ms={args.item_ms}&bootstrap_s={args.bootstrap}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    env["GPUFLEET_HOME"] = str(home)
    photos, inbox = home / "photos", home / "inbox"
    photos.mkdir(parents=True)
    keys = [f"p{i:06d}.bin" for i in range(args.items)]
    for key in keys:
        (photos / key).write_bytes(key.encode())
    settings = Settings.from_env(env)
    log = open(home / "controller.log", "wb")  # noqa: SIM115
    controller = subprocess.Popen(
        [sys.executable, "-m", "gpufleet", "controller", "--inbox", inbox.as_uri() + "/",
         "--model", model, "--cooldown", "2", "--interval", "0.5", "--max-workers", "20"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    index = Index(settings.db)
    records = FleetRecords(index)
    registry = home / "fleet" / pool_name(model)
    try:
        wait(lambda: records.decisions(model, limit=1))
        inbox.mkdir(exist_ok=True)
        (inbox / ".batch.json.tmp").write_text(json.dumps(
            {"input": photos.as_uri() + "/", "items": keys, "deadline_s": args.deadline}))
        dropped = time.time()
        (inbox / ".batch.json.tmp").rename(inbox / "batch.json")
        made = wait(lambda: records.manifests())
        job = records.manifests()[0]["job_id"]
        launched = wait(lambda: list(registry.glob("*.json")))
        first = wait(lambda: index.job(job).counts.done > 0)
        peak = 0

        def done() -> bool:
            nonlocal peak
            peak = max(peak, len(list(registry.glob("*.json"))))
            return index.job(job).state.finished

        finished = wait(done)
        zero = wait(lambda: not list(registry.glob("*.json")))
    finally:
        controller.send_signal(signal.SIGTERM)
        controller.wait(timeout=30)
    work_s = args.items * args.item_ms / 1000
    optimum = math.ceil(work_s / (args.deadline - args.bootstrap))
    usage = index.job(job).usage
    print(f"{args.items} items x {args.item_ms} ms, bootstrap {args.bootstrap} s, "
          f"deadline {args.deadline} s")
    for what, at in (("job made", made), ("first worker launched", launched),
                     ("first item done", first), ("job done", finished),
                     ("fleet back at zero", zero)):
        print(f"  {what:<24} {at - dropped:7.1f} s after the manifest landed")
    print(f"  workers: {peak} (analytical optimum {optimum}); makespan "
          f"{finished - dropped:.1f} s vs {args.bootstrap + work_s / optimum:.1f} s "
          f"for the optimum without launch overhead "
          f"(ratio {(finished - dropped) / (args.bootstrap + work_s / optimum):.2f})")
    print(f"  worker-seconds {usage.worker_s:.1f} (booting {usage.booting_s:.1f}, busy "
          f"{usage.busy_s:.1f}, idle {usage.idle_s:.1f}) vs {work_s:.1f} s of pure work; "
          f"cost ${usage.cost:.5f}")


def tick_cost(args: argparse.Namespace, home: Path) -> None:
    settings = Settings.from_env({"GPUFLEET_HOME": str(home)})
    index = Index(settings.db)
    model = "synthetic?item_ms=10&bootstrap_s=300"
    enqueue_job(settings, index, "tick-job", [f"p{i:07d}.jpg" for i in range(args.tick_items)],
                input="file:///in/", output="file:///out/", model=model, deadline_s=1800)
    ctl = Controller(settings, index, open_provider("local", settings, model=model),
                     model=model, config=PolicyConfig(max_workers=0),
                     estimates=Estimates.for_model(model))
    ctl.tick()
    runs = 5
    start = time.perf_counter()
    for _ in range(runs):
        ctl.tick()
    tick_s = (time.perf_counter() - start) / runs
    start = time.perf_counter()
    for _ in range(runs):
        with index.engine.connect() as conn:
            conn.execute(select(func.count()).select_from(items).where(
                items.c.job_id == "tick-job", items.c.status == "pending")).scalar()
    count_s = (time.perf_counter() - start) / runs
    print(f"one tick with {args.tick_items} pending items: {tick_s * 1000:.1f} ms; a bare "
          f"COUNT(*) of them {count_s * 1000:.1f} ms (ratio {tick_s / count_s:.2f})")
    ctl.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=6000)
    parser.add_argument("--item-ms", type=float, default=10)
    parser.add_argument("--bootstrap", type=float, default=5)
    parser.add_argument("--deadline", type=float, default=40)
    parser.add_argument("--tick-items", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        from_zero(args, Path(tmp) / "a")
        tick_cost(args, Path(tmp) / "b")


if __name__ == "__main__":
    main()
