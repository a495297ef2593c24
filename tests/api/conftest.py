"""The API under test: a real uvicorn server on a free port, in a thread, with a clock we move.

``world`` is one installation shared by the read-only tests: two tenants
(a and b) with keys of every scope, and a job each, processed by a real
worker process. Tests that change things make their own jobs or servers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gpufleet.api.app import create_app
from gpufleet.api.keys import KeyStore
from gpufleet.api.server import server_config
from gpufleet.cache import Cache
from gpufleet.config import Settings
from tests.conftest import Home, write_files

MODEL = "synthetic?item_ms=1"
ITEMS = 30  # per tenant's job, plus one missing object that fails
PAGE_MAX = 50


class Clock:
    """Wall time that only moves when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ApiServer:
    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 cache: Cache | None = None) -> None:
        self.clock = clock or Clock()
        self.app = create_app(settings, clock=self.clock, cache=cache)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = server_config(self.app, settings, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the API server did not start")
            time.sleep(0.02)

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def api_home(path: Path, **env: str) -> Home:
    home = Home(path)
    home.path.mkdir(parents=True, exist_ok=True)
    # Rates and quotas a shared world of many tests stays within (tests of them set theirs).
    home.env.update({"GPUFLEET_API_RATE_PER_S": "100000", "GPUFLEET_API_BURST": "100000",
                     "GPUFLEET_API_MAX_MODELS": "64", "GPUFLEET_API_MAX_OPEN_JOBS": "10000",
                     "GPUFLEET_API_MAX_PAGE": str(PAGE_MAX), **env})
    return home


def tenant_input(home: Home, tenant: str) -> Path:
    """The folder of a tenant's own input location on the embedded default."""
    return home.path / "buckets" / "input" / tenant


def make_key(home: Home, tenant: str, scopes: str) -> tuple[str, str]:
    """A new key of tenant (its id, and the key), made straight in the index."""
    index = home.index()
    try:
        record, key = KeyStore(index).create(tenant=tenant, scopes=scopes)
    finally:
        index.close()
    return record.id, key


def run_worker(home: Home, model: str = MODEL, **env: str) -> None:
    """A real worker process that works until the queue has been empty for a second."""
    home.run("worker", "--model", model, "--max-idle", "1", timeout=120, **env)


@dataclass
class World:
    home: Home
    server: ApiServer
    keys: dict[str, str] = field(default_factory=dict)  # "a", "a-read", "b-admin", ...
    jobs: dict[str, str] = field(default_factory=dict)  # tenant -> its processed job
    key_ids: dict[str, str] = field(default_factory=dict)

    def client(self, who: str | None = None, **headers: str) -> httpx.Client:
        return self.server.client(self.keys[who] if who else None, **headers)

    def submit(self, who: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.client(who) as http:
            response = http.post("/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        doc: dict[str, Any] = response.json()
        return doc

    def make_key(self, name: str, tenant: str, scopes: str) -> str:
        self.key_ids[name], self.keys[name] = make_key(self.home, tenant, scopes)
        return self.keys[name]


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = api_home(tmp_path_factory.mktemp("api") / "home")
    server = ApiServer(home.settings)
    w = World(home, server)
    for tenant in ("a", "b"):
        # Each tenant's objects lie in its own input location (the same files, twice)
        keys = write_files(tenant_input(home, tenant) / "photos", ITEMS)
        w.make_key(tenant, tenant, "submit,read,admin")
        w.make_key(f"{tenant}-read", tenant, "read")
        w.make_key(f"{tenant}-submit", tenant, "submit")
        job = w.submit(tenant, {"items": [*keys, "missing.bin"], "model": MODEL,
                                "input": "photos/"})
        w.jobs[tenant] = job["job"]
    run_worker(home)
    yield w
    server.stop()
    home.close()
