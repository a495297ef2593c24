"""Read-through caching in Redis, tenant in every key; with Redis down the index answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.api.conftest import MODEL, ApiServer, api_home, make_key, run_worker, tenant_input
from tests.conftest import write_files
from tests.servers import RedisServer


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")  # our own: this test stops it
    server.start()
    yield server
    server.stop()


def test_results_are_cached_in_redis_and_served_from_the_index_when_it_is_down(
        tmp_path: Path, own_redis: RedisServer) -> None:
    # Given an API whose cache is Redis, and a processed job of tenant t
    home = api_home(tmp_path / "home", GPUFLEET_CACHE=own_redis.url)
    photos = tenant_input(home, "t") / "photos"
    write_files(photos, 3)
    _, key = make_key(home, "t", "submit,read")
    server = ApiServer(home.settings)
    try:
        with server.client(key) as http:
            job = http.post("/v1/jobs", json={"items": ["item-00000.bin"], "model": MODEL,
                                              "input": "photos/"}).json()["job"]
            run_worker(home)
            # When an item and the job are read
            item = http.get(f"/v1/items/{job}/item-00000.bin").json()
            view = http.get(f"/v1/jobs/{job}").json()
            # Then both are in Redis, under keys naming the tenant
            keys = [k.decode() for k in redis.Redis.from_url(own_redis.url).keys("*")]
            assert any(":t:item:" in k and job in k for k in keys), keys
            assert any(":t:job:" in k for k in keys), keys
            # And when Redis goes away, the same answers come from the index
            own_redis.stop()
            assert http.get(f"/v1/items/{job}/item-00000.bin").json() == item
            assert http.get(f"/v1/jobs/{job}").json()["done"] == view["done"] == 1
            assert http.get("/readyz").status_code == 200  # the cache is not a dependency
    finally:
        server.stop()
        home.close()
