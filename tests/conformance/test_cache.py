"""One suite every Cache passes: get/set/delete, TTL, tenant isolation; Redis down is a miss.

The in-memory LRU runs on a fake clock; Redis is a real redis-server started
on a free port, where TTLs are real and expiry is awaited by polling.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpufleet.cache import Cache, MemoryCache, RedisCache, cache_key, open_cache
from gpufleet.config import Settings
from gpufleet.errors import ConfigError
from tests.servers import RedisServer, free_port


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    cache: Cache
    pass_time: Callable[[float], None]  # let this many seconds go by
    expired: Callable[[Callable[[], bool]], None]  # wait until the predicate holds


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        clock = FakeClock()

        def advance(seconds: float) -> None:
            clock.now += seconds

        def check(predicate: Callable[[], bool]) -> None:
            assert predicate()

        yield Backend(MemoryCache(clock=clock), advance, check)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    # A namespace per test: the server is shared with other suites.
    cache = open_cache(f"{server.url}?namespace=t{secrets.token_hex(4)}")

    def wait(predicate: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not predicate():
            assert time.monotonic() < deadline, "entry did not expire within 30 s"
            time.sleep(0.05)

    yield Backend(cache, lambda s: time.sleep(s), wait)
    cache.close()


def test_set_then_get_returns_the_value(backend: Backend) -> None:
    cache = backend.cache
    key = cache_key("acme", "job", "20240101-000000-abcdef")
    assert cache.get(key) is None
    cache.set(key, {"state": "running", "done": 3, "tags": ["tabby", "é"]}, ttl_s=60)
    assert cache.get(key) == {"state": "running", "done": 3, "tags": ["tabby", "é"]}


def test_a_returned_value_is_a_copy(backend: Backend) -> None:
    key = cache_key("acme", "job", "j")
    backend.cache.set(key, {"n": 1}, ttl_s=60)
    got = backend.cache.get(key)
    assert got is not None
    got["n"] = 2
    assert backend.cache.get(key) == {"n": 1}


def test_delete_removes_the_entry(backend: Backend) -> None:
    key = cache_key("acme", "results", "j/page-1")
    backend.cache.set(key, [1, 2], ttl_s=60)
    backend.cache.delete(key)
    assert backend.cache.get(key) is None
    backend.cache.delete(key)  # deleting what is not there is fine


def test_an_entry_expires_after_its_ttl(backend: Backend) -> None:
    # Given an entry with a short TTL and one with a long TTL
    short, long = cache_key("acme", "job", "short"), cache_key("acme", "job", "long")
    backend.cache.set(short, "soon gone", ttl_s=0.2)
    backend.cache.set(long, "stays", ttl_s=600)
    # When the short TTL has passed, then only the long one answers
    backend.pass_time(0.3)
    backend.expired(lambda: backend.cache.get(short) is None)
    assert backend.cache.get(long) == "stays"


def test_setting_again_replaces_value_and_ttl(backend: Backend) -> None:
    key = cache_key("acme", "job", "j")
    backend.cache.set(key, "old", ttl_s=0.2)
    backend.cache.set(key, "new", ttl_s=600)
    backend.pass_time(0.3)
    assert backend.cache.get(key) == "new"


@pytest.mark.parametrize(("mine", "theirs"), [
    (("acme", "job", "j1"), ("globex", "job", "j1")),  # same job id, other tenant
    (("a:job", "x", "y"), ("a", "job:x", "y")),  # separators inside names cannot collide
    (("a", "job", "x:y"), ("a", "job:x", "y")),
    (("a%3Ab", "job", "1"), ("a:b", "job", "1")),  # nor can escapes
])
def test_one_tenants_entry_never_answers_another(backend: Backend, mine: tuple[str, str, str],
                                                 theirs: tuple[str, str, str]) -> None:
    # Given an entry cached for one tenant
    backend.cache.set(cache_key(*mine), "mine", ttl_s=60)
    # Then a lookup with any other (tenant, kind, id) misses
    assert backend.cache.get(cache_key(*theirs)) is None
    backend.cache.delete(cache_key(*theirs))
    assert backend.cache.get(cache_key(*mine)) == "mine"


def test_keys_need_a_tenant_and_a_kind() -> None:
    with pytest.raises(ValueError, match="tenant"):
        cache_key("", "job", "1")
    with pytest.raises(ValueError, match="tenant"):
        cache_key("acme", "", "1")


def test_a_ttl_must_be_positive(backend: Backend) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        backend.cache.set(cache_key("a", "job", "1"), 1, ttl_s=0)


def test_concurrent_use_from_threads(backend: Backend) -> None:
    # Given threads setting and reading their own keys at once
    def work(n: int) -> None:
        for i in range(50):
            key = cache_key(f"tenant-{n}", "job", str(i))
            backend.cache.set(key, [n, i], ttl_s=60)
            assert backend.cache.get(key) == [n, i]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every entry is there, each with its own value
    assert backend.cache.get(cache_key("tenant-3", "job", "49")) == [3, 49]


# -- the in-memory LRU -----------------------------------------------------------------


def test_the_memory_cache_evicts_the_least_recently_used() -> None:
    cache = MemoryCache(max_entries=2, clock=FakeClock())
    a, b, c = (cache_key("t", "job", k) for k in "abc")
    cache.set(a, 1, ttl_s=60)
    cache.set(b, 2, ttl_s=60)
    assert cache.get(a) == 1  # a is now the most recently used
    cache.set(c, 3, ttl_s=60)
    assert (cache.get(a), cache.get(b), cache.get(c)) == (1, None, 3)
    assert len(cache) == 2


def test_open_cache_by_url(tmp_path: Path) -> None:
    assert isinstance(open_cache("memory://"), MemoryCache)
    assert open_cache("memory://?max_entries=5").max_entries == 5  # type: ignore[attr-defined]
    assert Settings(home=tmp_path).cache == "memory://"
    with pytest.raises(ConfigError, match="GPUFLEET_CACHE"):
        open_cache("memcached://host")
    with pytest.raises(ConfigError, match="GPUFLEET_CACHE"):
        Settings.from_env({"GPUFLEET_CACHE": "memcache://x", "GPUFLEET_HOME": str(tmp_path)})


# -- Redis down ------------------------------------------------------------------------


def test_redis_down_degrades_to_misses_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Given a Redis cache whose server is not running yet
    server = RedisServer(tmp_path / "redis")
    clock = FakeClock()
    cache = RedisCache(server.url, clock=clock, retry_after_s=5.0)
    key = cache_key("acme", "job", "j1")
    caplog.set_level(logging.WARNING, logger="gpufleet.cache")
    try:
        # When it is used, then nothing raises: reads miss, writes and deletes are dropped
        for _ in range(3):
            cache.set(key, "value", ttl_s=60)
            assert cache.get(key) is None
            cache.delete(key)
        # And the outage is logged once, naming the cache
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1
        assert "unavailable, serving misses" in warnings[0]
        assert f"127.0.0.1:{server.port}" in warnings[0]
        # When Redis comes up, the cache keeps serving misses until its retry pause is over
        server.start()
        cache.set(key, "value", ttl_s=60)
        assert cache.get(key) is None
        # Then after the pause it uses Redis again, and says so
        clock.now += 5.0
        cache.set(key, "value", ttl_s=60)
        assert cache.get(key) == "value"
        assert "is back" in caplog.records[-1].getMessage()
        # When Redis stops in the middle, then again only misses
        server.stop()
        assert cache.get(key) is None
    finally:
        cache.close()
        server.stop()


def test_redis_with_nothing_listening_is_a_miss_not_an_error() -> None:
    # One refused connection, then no calls until the retry pause is over
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0")
    key = cache_key("acme", "job", "j1")
    for _ in range(100):
        assert cache.get(key) is None
    assert cache.ping() is False
    cache.close()
