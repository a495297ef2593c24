"""Worker processes on this machine, each logging to a file under GPUFLEET_HOME/logs.

Two uses. ``submit --wait`` and the demo keep a few workers alive for one job
(``ensure``/``stop``). The controller uses the provider interface, with a
registry directory (GPUFLEET_HOME/fleet/<pool>/): one JSON record per worker
it launched (id, pid, the process's start time, capacity), written before the
worker runs, so a controller started later finds the workers an earlier one
launched. A record whose process is gone (exited, killed, a zombie, or its pid
reused by another program) is dropped: the worker is noticed dead and the
next decision replaces it.

Workers started for the controller run in their own session, so a Ctrl-C or a
SIGTERM meant for the controller does not reach them: only ``drain`` stops
them. Each gets GPUFLEET_INSTANCE (its id), GPUFLEET_CAPACITY (spot or
on-demand: the label its cost is charged at) and GPUFLEET_NOTICE_FILE (touch
it to simulate a spot interruption).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpufleet.autoscale.providers.base import Machine, pool_name
from gpufleet.config import Settings
from gpufleet.domain import Capacity

log = logging.getLogger(__name__)


class LocalProvider:
    name = "local"
    launch_overhead_s = 1.0

    @classmethod
    def for_pool(cls, settings: Settings, *, model: str) -> LocalProvider:
        """The provider of the model's pool, registered under GPUFLEET_HOME/fleet."""
        return cls(settings, model=model, registry=settings.home / "fleet" / pool_name(model))

    def __init__(self, settings: Settings, *, model: str, max_idle_s: float | None = None,
                 env: dict[str, str] | None = None, registry: Path | None = None,
                 own_session: bool = False) -> None:
        """own_session: ensure() starts workers that a terminal's Ctrl-C does not reach."""
        self.settings, self.model, self.max_idle_s = settings, model, max_idle_s
        self.own_session = own_session
        self.env = {**os.environ, "GPUFLEET_HOME": str(settings.home), **(env or {})}
        # Workers started here share this host: one GPUFLEET_METRICS_PORT would let only the
        # first start. Theirs is off; `gpufleet worker --metrics-port` runs a watched one.
        self.env.pop("GPUFLEET_METRICS_PORT", None)
        self.registry = registry
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.crashes = 0  # workers that exited with an error, not from idleness

    def _spawn(self, name: str, env: dict[str, str] | None = None,
               new_session: bool = False) -> subprocess.Popen[bytes]:
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        self.started += 1
        log_path = self.settings.logs_dir / f"worker-{name}.log"
        cmd = [sys.executable, "-m", "gpufleet", "worker", "--model", self.model]
        if self.max_idle_s is not None:
            cmd += ["--max-idle", str(self.max_idle_s)]
        with open(log_path, "ab") as log_file:
            return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                    env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL,
                                    start_new_session=new_session)

    # Workers for one job: submit --wait, the demo -------------------------------

    def ensure(self, count: int) -> int:
        """Keep count workers alive, replacing any that died. Returns how many were started."""
        alive = [p for p in self.procs if p.poll() is None]
        self.crashes += sum(1 for p in self.procs if p.poll() not in (None, 0))
        self.procs = alive
        missing = max(0, count - len(self.procs))
        for _ in range(missing):
            self.procs.append(self._spawn(f"{os.getpid()}-{self.started + 1}",
                                          new_session=self.own_session))
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

    # The provider interface, for the controller ---------------------------------

    def _records(self) -> Path:
        if self.registry is None:
            raise RuntimeError("this LocalProvider has no registry directory")
        self.registry.mkdir(parents=True, exist_ok=True)
        return self.registry

    def machines(self) -> list[Machine]:
        for p in self.procs:
            p.poll()  # reap our own children that exited, so they are not zombies
        found = []
        for path in sorted(self._records().glob("*.json")):
            record = _read(path)
            if record is None:
                continue
            if not _alive(int(record["pid"]), record.get("start")):
                self._forget(path, record)
                continue
            found.append(Machine(id=record["id"], capacity=Capacity(record["capacity"]),
                                 launched_at=float(record["launched_at"]),
                                 draining=record.get("drain_at") is not None))
        return found

    def _forget(self, path: Path, record: dict[str, Any]) -> None:
        child = next((p for p in self.procs if p.pid == record["pid"]), None)
        # Reaped here: it may have exited after machines() polled it (a zombie by now).
        code = child.poll() if child is not None else None
        if record.get("drain_at") is None:
            log.warning("worker %s (pid %s) is gone without being drained (exit code %s): "
                        "it will be replaced", record["id"], record["pid"], code)
        else:
            log.info("worker %s drained and exited", record["id"])
        if child is not None:
            self.procs.remove(child)
        path.unlink(missing_ok=True)
        path.with_suffix(".notice").unlink(missing_ok=True)

    def launch(self, count: int, capacity: Capacity) -> list[str]:
        registry = self._records()
        ids = []
        for _ in range(count):
            worker_id = f"local-{secrets.token_hex(4)}"
            env = {"GPUFLEET_INSTANCE": worker_id, "GPUFLEET_CAPACITY": capacity.value,
                   "GPUFLEET_NOTICE_FILE": str(registry / f"{worker_id}.notice")}
            launched_at = time.time()
            proc = self._spawn(worker_id, env, new_session=True)
            self.procs.append(proc)
            _write(registry / f"{worker_id}.json", {
                "id": worker_id, "pid": proc.pid, "start": _start_ticks(proc.pid),
                "capacity": capacity.value, "launched_at": launched_at, "model": self.model})
            ids.append(worker_id)
        return ids

    def drain(self, ids: Sequence[str]) -> None:
        registry = self._records()
        for worker_id in ids:
            path = registry / f"{worker_id}.json"
            record = _read(path)
            if record is None:
                continue
            if _alive(int(record["pid"]), record.get("start")):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(record["pid"]), signal.SIGTERM)
            record.setdefault("drain_at", time.time())
            _write(path, record)

    def protect(self, busy: Sequence[str]) -> None:
        """Nothing here stops a local worker on its own: nothing to protect from."""

    def spot_refused(self) -> bool:
        return False


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # gone meanwhile, or being replaced: the next look sees it
    return record if isinstance(record, dict) and "pid" in record else None


def _write(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None without /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _start_ticks(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _alive(pid: int, start: int | None) -> bool:
    """The process with this pid exists, is not a zombie, and is the one we started."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to someone else: the start time tells whether it is ours
    fields = _stat(pid)
    if fields is None:
        return not Path("/proc/self/stat").exists()  # no /proc on this system: trust kill
    return fields[0] != "Z" and (start is None or int(fields[19]) == start)
