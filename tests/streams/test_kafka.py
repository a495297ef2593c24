"""Kafka: no broker runs here, so only what needs none (README says so): the URL is read
with clear errors, and a consumer whose broker is not there reads nothing and closes."""

from __future__ import annotations

import pytest

from gpufleet.config import Settings
from gpufleet.errors import ConfigError
from gpufleet.index import Index
from gpufleet.streams.source import open_source
from tests.servers import free_port


@pytest.mark.parametrize("uri", ["kafka:///photos", "kafka://broker:9092", "kafka://b:1/a/b"])
def test_a_kafka_url_without_broker_or_topic_is_one_clear_error(index: Index, uri: str
                                                                ) -> None:
    with pytest.raises(ConfigError, match="kafka://BROKER:PORT/TOPIC"):
        open_source(uri, index=index, consumer="c1")


def test_an_absent_broker_means_nothing_read_and_nothing_acknowledged(
        settings: Settings, index: Index) -> None:
    source = open_source(f"kafka://127.0.0.1:{free_port()}/photos?group=g1", index=index,
                         consumer="c1")
    assert source.uri.endswith("/photos") and source.hold_s > 0
    assert source.read(10, wait_s=0.2) == []
    source.ack([])
    source.close()
