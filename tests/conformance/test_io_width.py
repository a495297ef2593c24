"""How many threads a worker reads and writes each store with: the store's own width, or
GPUFLEET_FETCH_CONCURRENCY for every store where it is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.config import Settings, WorkerSettings
from gpufleet.errors import ConfigError
from gpufleet.store import open_location
from gpufleet.worker.io_pools import IoPools
from tests.servers import MotoServer


def test_a_directory_is_read_by_one_thread_and_s3_by_several(
        aws_env: MotoServer, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    folder = open_location(tmp_path.as_uri() + "/", settings=settings)
    bucket = open_location("s3://any-bucket/photos/", settings=settings)
    pools = IoPools("fetch", settings.worker.fetch_concurrency)
    assert pools.width_for(folder) == 1
    assert pools.width_for(bucket) == 16
    assert bucket.store.client.meta.config.max_pool_connections >= 16
    # One pool per width, made once: another directory shares the first one's
    assert pools.for_location(open_location((tmp_path / "b").as_uri() + "/")) is \
        pools.for_location(folder)
    pools.shutdown()


def test_a_writer_writes_to_a_directory_itself_and_to_s3_through_the_pool(
        aws_env: MotoServer, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    pools = IoPools("put", settings.worker.fetch_concurrency)
    assert pools.parallel_for(open_location(tmp_path.as_uri() + "/", settings=settings)) is None
    bucket = open_location("s3://any-bucket/out/", settings=settings)
    assert pools.parallel_for(bucket) is pools.for_location(bucket)
    pools.shutdown()


def test_the_setting_is_every_stores_width(aws_env: MotoServer, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, worker=WorkerSettings(fetch_concurrency=3))
    pools = IoPools("put", settings.worker.fetch_concurrency)
    for uri in (tmp_path.as_uri() + "/", "s3://any-bucket/out/"):
        assert pools.width_for(open_location(uri, settings=settings)) == 3
    pools.shutdown()


def test_a_negative_width_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FETCH_CONCURRENCY must be at least 1 \\(0: each"):
        Settings.from_env({"GPUFLEET_HOME": str(tmp_path), "GPUFLEET_FETCH_CONCURRENCY": "-1"})
