"""API latency under a steady load: item lookups with the cache cold and warm, and a job view.

    python benchmarks/api_load.py [--rate 500] [--seconds 10] [--items 12000]

Starts `gpufleet api` as its own process on loopback (a fresh GPUFLEET_HOME,
one job whose items a real worker tags), then drives it from a separate load
generator process: open loop, a request every 1/rate seconds over keep-alive
connections, each latency measured from the moment the request was due (so a
stall is counted, not hidden). Phases:

- items, cold: every request is a different item, never read before (index);
- items, warm: the same items again (in the cache);
- job view:    GET /v1/jobs/{id}.
- healthz while polled: GET /healthz at 100/s from one client while two others
  poll the job's view as fast as they can, on a second API process whose
  cache keeps nothing (every view is counted from the index): a view read on
  the event loop would stall /healthz. Target (issue 11, item 12): p99 ≤ 100 ms.

Prints p50/p99/max latency and the achieved requests/s per phase, the
cold/warm ratio, and, if `wrk` is installed, the closed-loop maximum rate.
Target: p99 under 10 ms for warm item lookups at 500 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

MODEL = "synthetic?item_ms=0"
CONNECTIONS = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the load generator (runs in its own process) ---------------------------------------


async def _one(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
               ) -> int:
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def _drive(port: int, key: str, paths: list[str], rate: float
                 ) -> tuple[list[float], int, float]:
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()

    async def send(due: float, path: str) -> None:
        nonlocal errors
        conn = await idle.get()  # waiting for a free connection counts as latency
        request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Authorization: Bearer {key}\r\n\r\n").encode()
        status = await _one(conn, request)
        latencies.append(loop.time() - due)
        errors += status != 200
        idle.put_nowait(conn)

    start = loop.time() + 0.05
    tasks = []
    for i, path in enumerate(paths):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(due, path)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    while not idle.empty():
        idle.get_nowait()[1].close()
    return latencies, errors, elapsed


def _generator(port: int, key: str, paths: list[str], rate: float,
               out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(asyncio.run(_drive(port, key, paths, rate)))


def _poll(port: int, key: str, path: str, seconds: float) -> None:
    """GET path back to back over one keep-alive connection for seconds (a closed loop)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        conn.getresponse().read()
    conn.close()


def healthz_while_polled(port: int, key: str, job_path: str, seconds: float
                         ) -> dict[str, float]:
    pollers = [multiprocessing.Process(target=_poll, args=(port, key, job_path, seconds + 2))
               for _ in range(2)]
    for p in pollers:
        p.start()
    time.sleep(1)  # both polling
    try:
        return load(port, key, ["/healthz"] * int(100 * seconds), 100.0)
    finally:
        for p in pollers:
            p.join()


def load(port: int, key: str, paths: list[str], rate: float) -> dict[str, float]:
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    proc = multiprocessing.Process(target=_generator, args=(port, key, paths, rate, out))
    proc.start()
    latencies, errors, elapsed = out.get()
    proc.join()
    ms = sorted(x * 1000 for x in latencies)
    return {"p50_ms": statistics.median(ms), "p99_ms": ms[int(0.99 * (len(ms) - 1))],
            "max_ms": ms[-1], "rps": len(ms) / elapsed, "errors": errors, "n": len(ms)}


# -- the installation under test --------------------------------------------------------


def _run(env: dict[str, str], *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "gpufleet", *args], env=env, check=True,
                          capture_output=True, text=True).stdout


def prepare(home: Path, items: int) -> tuple[dict[str, str], str, str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    env.update(GPUFLEET_HOME=str(home), GPUFLEET_API_RATE_PER_S="1000000",
               GPUFLEET_API_BURST="1000000", GPUFLEET_API_CACHE_TTL_S="3600",
               GPUFLEET_CACHE=f"memory://?max_entries={2 * items}")
    photos = home / "buckets" / "input" / "photos"
    photos.mkdir(parents=True)
    keys = [f"photo-{i:06d}.jpg" for i in range(items)]
    for k in keys:
        (photos / k).write_bytes(k.encode())
    (home / "manifest.txt").write_text("\n".join(keys) + "\n")
    # Jobs submitted with the CLI (not through the API) belong to the tenant "default".
    key = json.loads(_run(env, "keys", "create", "--tenant", "default", "--scope", "read",
                          "--json"))["key"]
    return env, key, photos.as_uri() + "/", keys


def wait_for(url: str, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not come up at {url}") from None
            time.sleep(0.1)


def check(port: int, key: str, path: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {key}"})
    try:
        urllib.request.urlopen(request, timeout=10).read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"GET {path}: {exc.code} {exc.read()[:300]!r}") from None


def wrk_rate(port: int, key: str, path: str) -> float | None:
    if shutil.which("wrk") is None:
        return None
    result = subprocess.run(["wrk", "-t1", "-c8", "-d5s", "-H", f"Authorization: Bearer {key}",
                             f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--items", type=int, default=12000)
    args = parser.parse_args()
    per_phase = int(args.rate * args.seconds)
    if per_phase > args.items:
        raise SystemExit(f"--items must be at least rate x seconds ({per_phase})")
    with tempfile.TemporaryDirectory(prefix="gpufleet-api-bench-") as tmp:
        home = Path(tmp) / "home"
        env, key, input_uri, keys = prepare(home, args.items)
        job = json.loads(_run(env, "submit", str(home / "manifest.txt"), "--input", input_uri,
                              "--model", MODEL, "--json"))["job"]
        _run(env, "worker", "--model", MODEL, "--max-idle", "1")
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "gpufleet", "api", "--port", str(port)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(f"http://127.0.0.1:{port}/healthz", "the API")
            load(port, key, ["/healthz"] * 200, 200.0)  # connections and code paths warm
            item_paths = [f"/v1/items/{job}/{k}" for k in keys[:per_phase]]
            check(port, key, f"/v1/jobs/{job}")
            load_before = os.getloadavg()[0]
            results = {
                "items, cache cold": load(port, key, item_paths, args.rate),
                "items, cache warm": load(port, key, item_paths, args.rate),
                "job view": load(port, key, [f"/v1/jobs/{job}"] * per_phase, args.rate),
            }
            load_after = os.getloadavg()[0]
            wrk_item = wrk_rate(port, key, item_paths[0])
            wrk_job = wrk_rate(port, key, f"/v1/jobs/{job}")
        finally:
            server.terminate()
            server.wait(timeout=30)
        port = free_port()
        uncached = {**env, "GPUFLEET_API_CACHE_TTL_S": "0.001"}
        server = subprocess.Popen([sys.executable, "-m", "gpufleet", "api", "--port", str(port)],
                                  env=uncached, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            wait_for(f"http://127.0.0.1:{port}/healthz", "the API")
            results["healthz, 2 polling"] = healthz_while_polled(port, key, f"/v1/jobs/{job}",
                                                                 args.seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"GET on loopback, open loop at {args.rate:.0f} requests/s for {args.seconds:.0f} s "
          f"per phase, {CONNECTIONS} keep-alive connections, {os.cpu_count()} cores")
    print(f"load average {load_before:.2f} before, {load_after:.2f} after "
          "(the machine is shared: other work was running)")
    print(f"{'phase':<20}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'req/s':>9}{'errors':>8}")
    for name, r in results.items():
        print(f"{name:<20}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['max_ms']:>9.1f}"
              f"{r['rps']:>9.0f}{r['errors']:>8.0f}")
    cold, warm = results["items, cache cold"], results["items, cache warm"]
    print(f"cold/warm: p50 x{cold['p50_ms'] / warm['p50_ms']:.2f}, "
          f"p99 x{cold['p99_ms'] / warm['p99_ms']:.2f}")
    verdict = "meets" if warm["p99_ms"] < 10 and warm["rps"] >= 0.95 * args.rate else "misses"
    print(f"target p99 < 10 ms for warm item lookups at {args.rate:.0f}/s: {verdict} it "
          f"({warm['p99_ms']:.2f} ms at {warm['rps']:.0f}/s)")
    if wrk_item is not None and wrk_job is not None:
        print(f"closed-loop maximum (wrk, 8 connections): warm item {wrk_item:.0f} req/s, "
              f"job view {wrk_job:.0f} req/s")


if __name__ == "__main__":
    main()
