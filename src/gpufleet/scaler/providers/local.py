"""Worker processes on this machine, each logging to a file under GPUFLEET_HOME/logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from gpufleet.config import Settings


class LocalProvider:
    def __init__(self, settings: Settings, *, model: str, max_idle_s: float | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.settings, self.model, self.max_idle_s = settings, model, max_idle_s
        self.env = {**os.environ, "GPUFLEET_HOME": str(settings.home), **(env or {})}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.crashes = 0  # workers that exited with an error, not from idleness

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        self.started += 1
        log_path = self.settings.logs_dir / f"worker-{os.getpid()}-{self.started}.log"
        cmd = [sys.executable, "-m", "gpufleet", "worker", "--model", self.model]
        if self.max_idle_s is not None:
            cmd += ["--max-idle", str(self.max_idle_s)]
        with open(log_path, "ab") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                    stdin=subprocess.DEVNULL)

    def ensure(self, count: int) -> int:
        """Keep count workers alive, replacing any that died. Returns how many were started."""
        alive = [p for p in self.procs if p.poll() is None]
        self.crashes += sum(1 for p in self.procs if p.poll() not in (None, 0))
        self.procs = alive
        missing = max(0, count - len(self.procs))
        for _ in range(missing):
            self.procs.append(self._spawn())
        return missing

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Ask every worker to drain (SIGTERM), then wait; kill what is left."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    @property
    def log_dir(self) -> Path:
        return self.settings.logs_dir
