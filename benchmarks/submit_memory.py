"""Peak memory of `gpufleet submit` as manifests grow: manifests are read as a stream.

Prints, measured in this run, the peak RSS of separate processes on the
embedded default (SQLite index and queue):

- `gpufleet submit` of a 1,000,000-key manifest, as text and as JSON (the job and its
  items recorded, its 31,250 tasks enqueued): the target is at most 200 MB;
- the same manifest read whole into memory (``read_manifest``: what submit did before),
  for comparison;
- `gpufleet submit` of a manifest that is one 256 MB line: refused at its first 64 KiB;
- a bare `gpufleet status`: what the interpreter and its imports take anyway.

Not a test: nothing here decides anything.

    .venv/bin/python benchmarks/submit_memory.py [--keys 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
_PEAK = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    if sys.argv[0] == "-c":
        exec(sys.argv[1])
    else:
        runpy.run_module(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print("peak_kb", hwm, file=sys.stderr)
sys.exit(code)
"""


def peak_mb(home: Path, *args: str) -> tuple[float, float, int, str]:
    """(peak RSS in MB, seconds, exit code, last stderr line) of one command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    env.update(GPUFLEET_HOME=str(home), PYTHONPATH=SRC)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PEAK, *args], env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    lines = done.stderr.strip().splitlines()
    peak = next(int(line.split()[1]) for line in lines if line.startswith("peak_kb"))
    said = next((line for line in lines if not line.startswith("peak_kb")), "")
    return peak / 1024, seconds, done.returncode, said[:100]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keys = [f"photos/2024/{i // 1000:04d}/img-{i:08d}.jpg" for i in range(args.keys)]
        text = root / "keys.txt"
        text.write_text("\n".join(keys) + "\n")
        as_json = root / "keys.json"
        as_json.write_text(json.dumps({"input": "file:///data/", "items": keys}))
        line = root / "line.txt"
        with line.open("w") as f:
            for _ in range(256):
                f.write("x" * (1 << 20))
        del keys
        rows = [
            ("bare `gpufleet status`", root / "h0", ("gpufleet", "status")),
            ("read_manifest, whole (before)", root / "h1",
             ("-c", "from pathlib import Path; from gpufleet.manifest import read_manifest; "
              f"read_manifest(Path({str(text)!r}))")),
            (f"submit {args.keys:,} keys, text", root / "h2",
             ("gpufleet", "submit", str(text), "--model", "synthetic")),
            (f"submit {args.keys:,} keys, JSON", root / "h3",
             ("gpufleet", "submit", str(as_json), "--model", "synthetic")),
            ("submit one 256 MB line", root / "h4",
             ("gpufleet", "submit", str(line), "--model", "synthetic")),
        ]
        print(f"{'what':40} {'peak RSS':>10} {'time':>8}  exit  said")
        for what, home, command in rows:
            peak, seconds, code, said = peak_mb(home, *command)
            print(f"{what:40} {peak:8.0f} MB {seconds:6.1f} s  {code:4}  {said}")


if __name__ == "__main__":
    main()
