"""One machine, several GPUs: a worker process per GPU, one member of the fleet.

``gpufleet worker --gpus all`` (or ``--gpus 0,2``) starts one ``gpufleet
worker`` per GPU, each seeing only its own (``CUDA_VISIBLE_DEVICES``).
Processes rather than threads: what limits a pipeline is its per-item Python
work, and each process has a GIL of its own. They share the machine's
identity (one ``GPUFLEET_INSTANCE``, resolved once), so the controller counts
one machine with N GPUs, and each reports 1/N of its price, so a job's cost
counts the machine once.

The supervisor forwards SIGTERM and SIGINT (a drain: each pipeline finishes or
hands back its work), starts again a pipeline that crashed (its leases run out
and its tasks are redelivered meanwhile; one whose GPU was lost handed them back
before it exited) unless it keeps crashing, and once
every pipeline has exited after a drain completes the Auto Scaling lifecycle
action: a pipeline doing it would let the instance go while its siblings
still drain.

Metrics: each worker serves its own (``--metrics-port N``: the worker of the
first GPU on N, the next on N + 1, ...); the supervisor serves none.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType

from gpufleet.config import Settings
from gpufleet.errors import ConfigError
from gpufleet.worker.fleet_member import complete_lifecycle_action, identify
from gpufleet.worker.gpustats import gpu_count

log = logging.getLogger(__name__)
CRASHES_IN_A_ROW = 3  # a pipeline that crashes this often, each soon after starting, stays down
QUICK_CRASH_S = 60.0
RESTART_WAIT_S = 2.0
_GPU_ID = re.compile(r"^(\d+|(GPU|MIG)-[0-9A-Za-z-]+)$")


def resolve_gpus(spec: str, *, visible: str | None = None,
                 count: int | None = None) -> list[str]:
    """The GPUs ``--gpus`` names: ``all`` (those CUDA_VISIBLE_DEVICES leaves, else every one
    NVML sees) or a comma-separated list of indexes or UUIDs."""
    spec = spec.strip()
    if spec == "all":
        if visible is not None and visible.strip():
            gpus = [g.strip() for g in visible.split(",") if g.strip()]
        else:
            found = gpu_count() if count is None else count
            gpus = [str(i) for i in range(found)]
        if not gpus:
            raise ConfigError("--gpus all: no GPU found (NVML sees none: is nvidia-ml-py "
                              "installed and the driver loaded?); name them, e.g. --gpus 0,1")
        return gpus
    gpus = [g.strip() for g in spec.split(",")]
    bad = [g for g in gpus if not _GPU_ID.match(g)]
    if bad or not gpus:
        raise ConfigError(f"--gpus {spec!r}: expected all, or GPU indexes or UUIDs "
                          "separated by commas, e.g. 0,1")
    if len(set(gpus)) != len(gpus):
        raise ConfigError(f"--gpus {spec!r}: a GPU is named twice")
    return gpus


@dataclass
class _GpuWorker:
    gpu: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    crashes: int = 0  # quick crashes in a row
    restart_at: float | None = None
    exit_code: int | None = None  # set once it has ended for good

    @property
    def done(self) -> bool:
        return self.exit_code is not None


class Machine:
    """Runs and watches one ``gpufleet worker`` per GPU until each has ended."""

    def __init__(self, settings: Settings, gpus: list[str], *, model: str,
                 max_idle_s: float | None = None, metrics_port: int = 0) -> None:
        self.settings, self.model, self.max_idle_s = settings, model, max_idle_s
        if metrics_port and metrics_port + len(gpus) - 1 > 65535:
            raise ConfigError(f"--metrics-port {metrics_port}: {len(gpus)} workers need ports "
                              f"{metrics_port} to {metrics_port + len(gpus) - 1}, past 65535")
        self.metrics_port = metrics_port
        self.identity = identify(settings.fleet)  # once for all: one machine, one instance id
        self.pipelines = [_GpuWorker(gpu) for gpu in gpus]
        self.stop = threading.Event()

    def _command(self, p: _GpuWorker) -> list[str]:
        # Always given, 0 included: the children inherit GPUFLEET_METRICS_PORT, one port.
        port = self.metrics_port + self.pipelines.index(p) if self.metrics_port else 0
        cmd = [sys.executable, "-m", "gpufleet", "worker", "--model", self.model,
               "--machine-gpus", str(len(self.pipelines)), "--metrics-port", str(port)]
        if self.max_idle_s is not None:
            cmd += ["--max-idle", str(self.max_idle_s)]
        return cmd

    def _env(self, gpu: str) -> dict[str, str]:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu,
               "GPUFLEET_CAPACITY": self.identity.capacity}
        if self.identity.instance:
            env["GPUFLEET_INSTANCE"] = self.identity.instance
        return env

    def _start(self, p: _GpuWorker) -> None:
        p.proc = subprocess.Popen(self._command(p), env=self._env(p.gpu), stdin=subprocess.DEVNULL)
        p.started_at, p.restart_at = time.monotonic(), None
        log.info("GPU %s: worker pid %d started", p.gpu, p.proc.pid)

    def install_signal_handlers(self) -> None:
        def drain(signum: int, _frame: FrameType | None) -> None:
            log.info("%s: draining the workers of %d GPU(s)", signal.Signals(signum).name,
                     len(self.pipelines))
            self.stop.set()
            for p in self.pipelines:
                if p.proc is not None and p.proc.poll() is None:
                    p.proc.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, drain)
        signal.signal(signal.SIGINT, drain)

    def run(self, *, poll_s: float = 0.5) -> int:
        """Until every pipeline has ended; 0 if each ended well (idle, or drained)."""
        log.info("machine %s: %d GPU(s) (%s), one worker each, %s",
                 self.identity.instance or "(no instance id)", len(self.pipelines),
                 ", ".join(p.gpu for p in self.pipelines), self.model)
        for p in self.pipelines:
            self._start(p)
        while not all(p.done for p in self.pipelines):
            self.stop.wait(poll_s)
            for p in self.pipelines:
                self._watch(p)
        if self.stop.is_set():  # told to go: on EC2, let the instance terminate now
            complete_lifecycle_action(self.settings.fleet, self.identity.instance)
        return max((p.exit_code or 0 for p in self.pipelines), key=abs)

    def _watch(self, p: _GpuWorker) -> None:
        if p.done:
            return
        if p.proc is None:  # waiting to start again
            if self.stop.is_set():
                p.exit_code = 0  # nothing in flight to drain
            elif p.restart_at is not None and time.monotonic() >= p.restart_at:
                self._start(p)
                if self.stop.is_set() and p.proc is not None:  # told to drain meanwhile
                    p.proc.send_signal(signal.SIGTERM)
            return
        code = p.proc.poll()
        if code is None:
            return
        p.proc = None
        if code == 0 or self.stop.is_set():
            p.exit_code = code  # idle, or drained: done
            return
        ran_s = time.monotonic() - p.started_at
        p.crashes = p.crashes + 1 if ran_s < QUICK_CRASH_S else 1
        if p.crashes >= CRASHES_IN_A_ROW:
            log.error("GPU %s: its worker exited with code %d, %d times in a row within "
                      "%.0f s of starting; leaving it down, the other GPUs go on",
                      p.gpu, code, p.crashes, QUICK_CRASH_S)
            p.exit_code = code
            return
        log.warning("GPU %s: its worker exited with code %d; starting another in %.0f s "
                    "(its tasks come back to the queue: at once if it handed them back, as "
                    "after a lost GPU, else when their leases run out)",
                    p.gpu, code, RESTART_WAIT_S)
        p.restart_at = time.monotonic() + RESTART_WAIT_S
