"""Shared fixtures: an isolated GPUFLEET_HOME and a way to run the real CLI in it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from gpufleet.config import Settings
from gpufleet.index import Index
from tests.kube_api import kube  # noqa: F401  a Kubernetes API server, for the provider
from tests.servers import (  # noqa: F401  real servers on free ports, for every test
    aws_env,
    moto_server,
    nats_server,
    postgres_server,
    postgres_url,
    redis_server,
)

REPO = Path(__file__).resolve().parents[1]
# Child processes run this checkout's code (and its tests' plugins), whichever is installed.
PYTHONPATH = os.pathsep.join((str(REPO / "src"), str(REPO)))

# CI replays the same examples on every run, so a landing never hangs on a random draw;
# developers' runs keep exploring new ones.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


def _find_sample_dir() -> Path:
    """The labelled photos: SAMPLE_IMAGES_DIR, else shared/ beside the checkout or above it."""
    if "SAMPLE_IMAGES_DIR" in os.environ:
        return Path(os.environ["SAMPLE_IMAGES_DIR"])
    candidates = [p / "shared/data/imagenet-sample" for p in REPO.parents]
    candidates.append(Path("/work/shared/data/imagenet-sample"))  # where CI machines keep it
    return next((c for c in candidates if (c / "labels.csv").is_file()), candidates[0])


SAMPLE_DIR = _find_sample_dir()


def _as_from_a_terminal() -> None:
    """Ctrl-C reaches the process as it would from a terminal, even when the tests run in
    the background (where a shell starts them with SIGINT ignored, and children inherit it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Home:
    """One isolated gpufleet installation: its env, its CLI, its index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Neither the developer's settings nor their OpenTelemetry collector: a test that
        # wants traces exported says where (tests/e2e/test_traces.py).
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("GPUFLEET_", "OTEL_"))}
        self.env.update(GPUFLEET_HOME=str(path), PYTHONPATH=PYTHONPATH,
                        GPUFLEET_BACKOFF_BASE_S="0.2", GPUFLEET_DRAIN_GRACE_S="10")
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def index(self) -> Index:
        return Index(self.settings.db)

    def done(self, job: str) -> int:
        """The job's items done, read from its index. A test that acts once some are done
        (kills a worker or a server mid-job) reads them here, not with `gpufleet status`:
        a CLI process takes seconds to start on a loaded machine, time in which the
        workers can finish what the test meant to interrupt."""
        index = self.index()
        try:
            return index.job(job).counts.done
        finally:
            index.close()

    def run(self, *args: str | Path, check: bool = True, timeout: float = 300,
            **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "gpufleet", *map(str, args)],
                                env={**self.env, **env}, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"gpufleet {args} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str | Path, check: bool = True, **env: str) -> Any:
        return json.loads(self.run(*args, "--json", check=check, **env).stdout)

    def spawn(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.path / f"proc-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "gpufleet", *args],
                                env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_as_from_a_terminal)
        log.close()
        self.procs.append(proc)
        return proc

    def wait_for(self, predicate: Callable[[], bool], *, timeout_s: float = 120,
                 what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; logs:\n" + self.logs())
            time.sleep(0.2)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.path.glob("proc-*.log")))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    h = Home(tmp_path / "home")
    h.path.mkdir()
    yield h
    h.close()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE_DIR / "labels.csv").is_file():
        pytest.fail(f"sample photos not found in {SAMPLE_DIR}; set SAMPLE_IMAGES_DIR")
    return SAMPLE_DIR


def write_files(folder: Path, count: int, *, prefix: str = "item") -> list[str]:
    """count small files with distinct content: input for the synthetic model."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = []
    for i in range(count):
        key = f"{prefix}-{i:05d}.bin"
        (folder / key).write_bytes(f"object {i}".encode())
        keys.append(key)
    return keys
