"""One gpufleet installation under test: its backends, its workers, its submitters.

Everything is real: `gpufleet worker` and `gpufleet submit` processes, SQLite
files or a redis-server and a PostgreSQL cluster of its own on free ports (so a
nemesis may kill and restart them without touching anyone else's), and a results
folder that may be a size-limited tmpfs (so a nemesis can fill it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.servers import PostgresServer, RedisServer

REPO = Path(__file__).resolve().parents[2]
BACKENDS = ("embedded", "redis+postgres")
# Short leases and backoffs so faults are noticed and healed in seconds; more receives
# than the default because the nemeses themselves cause redeliveries.
_SETTINGS = {
    "GPUFLEET_VISIBILITY_TIMEOUT_S": "2",
    "GPUFLEET_CHUNK_SIZE": "8",
    "GPUFLEET_BACKOFF_BASE_S": "0.2",
    "GPUFLEET_BACKOFF_MAX_S": "2",
    "GPUFLEET_MAX_RECEIVES": "8",
    "GPUFLEET_SWEEP_QUIET_S": "3",
    "GPUFLEET_DRAIN_GRACE_S": "3",
}


class Cluster:
    """Backends and processes for one run, all under one directory."""

    def __init__(self, root: Path, backend: str, *, item_ms: float = 20,
                 results_mount: bool = False) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
        self.root, self.backend = root, backend
        self.model = f"synthetic?item_ms={item_ms:g}"
        self.home = root / "home"
        self.inputs = root / "inputs"
        self.results = root / "results"
        for folder in (self.home, self.inputs, self.results):
            folder.mkdir(parents=True, exist_ok=True)
        self.mounted = False
        if results_mount:
            self.mounted = _mount_tmpfs(self.results)
        self.redis: RedisServer | None = None
        self.postgres: PostgresServer | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
        self.env.update(_SETTINGS, GPUFLEET_HOME=str(self.home),
                        GPUFLEET_OUTPUT=self.results.as_uri() + "/",
                        PYTHONPATH=os.pathsep.join((str(REPO / "src"), str(REPO))))
        self.workers: list[subprocess.Popen[bytes]] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        if self.backend == "redis+postgres":
            self.redis = RedisServer(self.root / "redis", appendonly=True)
            self.redis.start()
            self.postgres = PostgresServer()
            self.postgres.start()
            self.env["GPUFLEET_QUEUE"] = self.redis.url
            self.env["GPUFLEET_DB"] = self.postgres.create_database()
            self.cli("init")

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a frozen process dies of SIGKILL, but late
                proc.kill()
            proc.wait()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres.remove()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.results)], check=False)
            self.mounted = False

    @property
    def db(self) -> str:
        return self.env.get("GPUFLEET_DB") or f"sqlite:///{self.home / 'index.db'}"

    def cli(self, *args: str, timeout_s: float = 120) -> str:
        """Run a gpufleet command to its end; its stdout."""
        done = subprocess.run([sys.executable, "-m", "gpufleet", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"gpufleet {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}")
        return done.stdout

    def spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        with open(self.root / f"{log}.log", "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "gpufleet", *args], env=self.env,
                                    stdout=subprocess.PIPE if args[0] == "submit" else out,
                                    stderr=out)
        self._procs.append(proc)
        return proc

    def start_worker(self, *, max_idle_s: float = 0) -> subprocess.Popen[bytes]:
        args = ["worker", "--model", self.model]
        if max_idle_s:
            args += ["--max-idle", f"{max_idle_s:g}"]
        proc = self.spawn(*args, log=f"worker-{len(self.workers)}")
        self.workers.append(proc)
        return proc

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def keep_workers(self, count: int, *, max_idle_s: float = 0) -> None:
        """Start workers until count are alive, as a fleet replaces the ones that die."""
        for _ in range(count - len(self.live_workers())):
            self.start_worker(max_idle_s=max_idle_s)

    def drain_workers(self, timeout_s: float = 60) -> None:
        """SIGTERM every live worker and wait for it; one that will not go is killed."""
        live = self.live_workers()
        for w in live:
            w.terminate()
        deadline = time.monotonic() + timeout_s
        for w in live:
            try:
                w.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()

    def logs(self, tail: int = 2000) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-tail:]
                         for p in sorted(self.root.glob("*.log")))


def _mount_tmpfs(folder: Path, size_mb: int = 64) -> bool:
    """A size-limited tmpfs on folder, so the results disk can be filled; False when this
    process may not mount (not root, or no CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                           str(folder)], capture_output=True, check=False)
    return done.returncode == 0
