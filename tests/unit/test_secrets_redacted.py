"""No password in a backend URL ever reaches an error message or a log line."""

from __future__ import annotations

import logging

import pytest

from gpufleet.cache import cache_key, open_cache
from gpufleet.errors import GpufleetError
from gpufleet.index import Index
from gpufleet.queue import open_queue
from gpufleet.redact import redact_url

SECRET = "s3cr3t-pa55"
UNREACHABLE = "127.0.0.1:9"  # the discard port: nothing listens there


@pytest.mark.parametrize(("url", "shown"), [
    (f"postgresql+psycopg://user:{SECRET}@db:5432/gpufleet",
     "postgresql+psycopg://user:***@db:5432/gpufleet"),
    (f"redis://:{SECRET}@cache:6379/1", "redis://:***@cache:6379/1"),
    (f"rediss://worker:{SECRET}@cache/0?namespace=x", "rediss://worker:***@cache/0?namespace=x"),
    (f"redis://cache/0?password={SECRET}", "redis://cache/0?password=***"),
    ("sqlite:///var/lib/gpufleet/index.db", "sqlite:///var/lib/gpufleet/index.db"),
    ("s3://bucket/prefix/", "s3://bucket/prefix/"),
])
def test_redact_url_hides_passwords_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_unparsable_url_is_not_echoed() -> None:
    assert SECRET not in redact_url(f"redis://:{SECRET}@[::1")


def _raised(action: object) -> str:
    with pytest.raises(GpufleetError) as caught:
        action()  # type: ignore[operator]
    return str(caught.value)


@pytest.mark.parametrize("url", [
    f"ftp://user:{SECRET}@host/queue",  # unsupported scheme
    f"redis://:{SECRET}@host:notaport/0",  # malformed
])
def test_queue_url_errors_carry_no_password(url: str) -> None:
    assert SECRET not in _raised(lambda: open_queue(url, name="m"))


def test_an_unreachable_redis_queue_names_no_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    queue = open_queue(f"redis://:{SECRET}@{UNREACHABLE}/0", name="m")
    try:
        message = _raised(queue.depth)
    finally:
        queue.close()
    assert UNREACHABLE in message and SECRET not in message
    assert SECRET not in caplog.text


@pytest.mark.parametrize("url", [
    f"mysql://user:{SECRET}@host/db",  # unsupported
    f"postgresql://user:{SECRET}@{UNREACHABLE}/db",  # unreachable
])
def test_index_url_errors_carry_no_password(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert SECRET not in _raised(lambda: Index(url))
    assert SECRET not in caplog.text


def test_cache_errors_and_warnings_carry_no_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert SECRET not in _raised(lambda: open_cache(f"memcached://u:{SECRET}@host/"))
    cache = open_cache(f"redis://:{SECRET}@{UNREACHABLE}/0")
    try:
        assert cache.get(cache_key("t", "job", "1")) is None  # a miss, with one warning
    finally:
        cache.close()
    assert "unavailable" in caplog.text and SECRET not in caplog.text
