"""What only one queue backend does: Redis outages, eviction and trimming; SQS queue families,
redrive policies and names. (What every backend does is in test_queue.py.)"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gpufleet.errors import ConfigError, QueueUnavailable
from gpufleet.queue import QueueDepth, open_queue
from gpufleet.queue.redis import RedisQueue
from gpufleet.queue.sqs import ensure_queue_pair, queue_name
from tests.conformance.backends import InProcessMoto, fresh_name
from tests.servers import RedisServer, free_port

# -- Redis -----------------------------------------------------------------------------


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return f"{redis_server.url}?namespace={fresh_name('specific-')}"


def test_redis_down_is_queue_unavailable_in_one_line() -> None:
    # Given a Redis URL where nothing listens
    queue = open_queue(f"redis://127.0.0.1:{free_port()}/0", name="q")
    # When the queue is used, then every call fails with one QueueUnavailable line
    for call in (lambda: queue.enqueue(["a"]), lambda: queue.depth(),
                 lambda: queue.receive(1, visibility_timeout_s=5, wait_s=1)):
        with pytest.raises(QueueUnavailable, match=r"redis queue 'q' at 127\.0\.0\.1") as info:
            call()
        assert "\n" not in str(info.value)
    queue.close()


def test_an_entry_deleted_under_its_lease_is_dropped_not_looped_on(
        redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with RedisQueue(redis_url, name="q") as queue:
        # Given two tasks leased for no time at all (so both can be reclaimed at once), one
        # of which someone deletes from the stream (XDEL, a trim) under its pending id
        queue.enqueue(["kept", "trimmed"])
        leases = {lease.body: lease for lease in queue.receive(2, visibility_timeout_s=0)}
        client = redis.Redis.from_url(redis_url.split("?")[0])
        client.xdel(queue.keys[0], leases["trimmed"].token.split("/")[0])
        client.close()
        # When the tasks are received again
        with caplog.at_level(logging.WARNING, logger="gpufleet.queue.redis"):
            again = queue.receive(10, visibility_timeout_s=30)
        # Then the kept one comes back, the deleted one is dropped, with a warning
        assert [(lease.body, lease.receives) for lease in again] == [("kept", 2)]
        assert "1 leased task(s) had been deleted" in caplog.text
        assert queue.depth() == QueueDepth(queued=0, in_flight=1, dead=0)
        # And only once: it is gone from the group's pending list for good
        caplog.clear()
        assert queue.release(again[0])
        with caplog.at_level(logging.WARNING, logger="gpufleet.queue.redis"):
            assert [lease.body for lease in queue.receive(10, visibility_timeout_s=0)] == ["kept"]
            assert [lease.body for lease in queue.receive(10, visibility_timeout_s=30)] == ["kept"]
        assert caplog.text == ""


def test_a_deleted_stream_and_group_come_back(redis_server: RedisServer, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_server.url)
    with RedisQueue(redis_url, name="q") as queue:
        # Given a queue whose keys someone deleted (FLUSHDB, a restart without AOF)
        queue.enqueue(["before"])
        client.delete(*queue.keys)
        # When it is used again, then it works from scratch: group and all
        assert queue.receive(1, visibility_timeout_s=30) == []
        queue.enqueue(["after"])
        (lease,) = queue.receive(1, visibility_timeout_s=30)
        assert (lease.body, lease.receives) == ("after", 1)
    client.close()


def test_a_waiting_receive_wakes_up_when_a_task_arrives(redis_url: str) -> None:
    with RedisQueue(redis_url, name="q") as queue, RedisQueue(redis_url, name="q") as other:
        # Given an empty queue and a task enqueued while a receive waits (blocking XREAD)
        import threading

        timer = threading.Timer(0.2, lambda: other.enqueue(["late"]))
        timer.start()
        # When the receive waits for work, then it returns the task
        got = queue.receive(1, visibility_timeout_s=30, wait_s=30)
        timer.join()
        assert [lease.body for lease in got] == ["late"]


def test_a_redis_that_evicts_keys_gets_a_warning(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    # Given a Redis whose maxmemory-policy may evict queued tasks
    server = RedisServer(tmp_path / "evicting")
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.close()
        # When a queue on it is first used, then a warning says so
        with caplog.at_level(logging.WARNING, logger="gpufleet.queue.redis"), \
                RedisQueue(server.url, name="q") as queue:
            queue.depth()
        assert "maxmemory-policy allkeys-lru" in caplog.text
    finally:
        server.stop()


def test_redis_url_and_timeout_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="bad Redis queue URL"):
        open_queue("redis://host:notaport/0", name="q")
    queue = open_queue("redis://127.0.0.1:1/0", name="q")
    with pytest.raises(ConfigError, match="visibility timeout 50000"):
        queue.receive(1, visibility_timeout_s=50_000)


# -- SQS ---------------------------------------------------------------------------------


@pytest.fixture
def sqs(in_process_moto: InProcessMoto, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessMoto]:
    for name, value in in_process_moto.env(str(tmp_path)).items():
        monkeypatch.setenv(name, value)
    yield in_process_moto


def test_sqs_redrive_policy_dead_letters_a_task_nobody_settles(sqs: InProcessMoto) -> None:
    # Given a queue family whose redrive policy allows two receives
    url = f"sqs://{fresh_name('family-')}"
    ensure_queue_pair(url, max_receives=2)
    queue = open_queue(url, name="synthetic?item_ms=5")
    queue.enqueue(["crashes every worker"])
    # When two workers in turn receive it and die without settling it
    for attempt in (1, 2):
        (lease,) = queue.receive(1, visibility_timeout_s=30)
        assert lease.receives == attempt
        sqs.clock.advance(31)
    # Then the next receive finds nothing: SQS moved it to the dead-letter queue
    assert queue.receive(1, visibility_timeout_s=30) == []
    (dead,) = queue.dead_letters()
    assert (dead.id, dead.body, dead.receives) == (lease.id, "crashes every worker", 2)
    assert "redrive policy" in dead.error
    assert queue.depth() == QueueDepth(queued=0, in_flight=0, dead=1)
    # And a redrive puts it back as a new task
    assert queue.redrive() == 1
    (again,) = queue.receive(1, visibility_timeout_s=30)
    assert (again.body, again.receives) == ("crashes every worker", 1)
    queue.close()


def test_sqs_each_model_gets_its_own_queue_pair_like_the_base(sqs: InProcessMoto) -> None:
    import boto3

    # Given a queue family made by `gpufleet init --create-queues`, run twice
    base = fresh_name("family-")
    ensure_queue_pair(f"sqs://{base}", max_receives=3)
    ensure_queue_pair(base, max_receives=3)
    # When two models' queues are opened
    first, second = (open_queue(f"sqs://{base}", name=m) for m in ("efficientnet-lite0", "x?y=1"))
    first.enqueue(["a"])
    assert second.depth() == QueueDepth(0, 0, 0) and first.depth() == QueueDepth(1, 0, 0)
    # Then each is its own SQS queue with a dead-letter queue and the base's redrive count
    client = boto3.client("sqs")
    urls = client.list_queues(QueueNamePrefix=base)["QueueUrls"]
    names = sorted(u.rsplit("/", 1)[1] for u in urls)
    expected = [queue_name(base, "efficientnet-lite0"), queue_name(base, "x?y=1"), base]
    assert names == sorted([*expected, *(n + "-dlq" for n in expected)])
    attrs = client.get_queue_attributes(QueueUrl=client.get_queue_url(
        QueueName=expected[0])["QueueUrl"], AttributeNames=["All"])["Attributes"]
    assert int(json.loads(attrs["RedrivePolicy"])["maxReceiveCount"]) == 3
    assert attrs["MessageRetentionPeriod"] == "1209600"
    client.close()
    first.close()
    second.close()


def test_sqs_without_the_base_queue_says_to_run_init(sqs: InProcessMoto) -> None:
    queue = open_queue(f"sqs://{fresh_name('nobody-made-')}", name="m")
    with pytest.raises(ConfigError, match="gpufleet init --create-queues"):
        queue.enqueue(["a"])


@pytest.mark.parametrize("url", [
    "sqs://", "sqs://has.dot", "sqs://" + "x" * 77, "sqs://a.fifo", "https://example.com/123/q",
    "https://sqs.eu-west-1.amazonaws.com/q"])
def test_bad_sqs_urls_are_refused_in_one_line(url: str) -> None:
    with pytest.raises(ConfigError, match=r"bad SQS queue URL|unsupported queue URL") as info:
        open_queue(url, name="m")
    assert "\n" not in str(info.value)


def test_a_full_queue_url_gives_region_and_account() -> None:
    from gpufleet.queue.sqs_setup import parse_url

    ref = parse_url("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs")
    assert (ref.base, ref.region, ref.account) == ("jobs", "eu-west-1", "123456789012")
    assert parse_url("sqs://jobs").base == "jobs"


def test_queue_names_are_valid_deterministic_and_distinct() -> None:
    specs = ["efficientnet-lite0", "synthetic?item_ms=5", "synthetic?item-ms=5",
             "pkg.module:Tagger?weights=s3://bucket/a b/c.onnx&threshold=0.5", "Ω" * 200, ""]
    for base in ("gpufleet", "b" * 76):
        names = [queue_name(base, spec) for spec in specs]
        # Then every name (and its dead-letter queue's) is a valid SQS name
        for name in names:
            assert re.fullmatch(r"[A-Za-z0-9_-]{1,76}", name), name
        # And the same spec always maps to the same queue, different specs never share one
        assert names == [queue_name(base, spec) for spec in specs]
        assert len(set(names)) == len(specs)
    assert queue_name("gpufleet", "efficientnet-lite0").startswith("gpufleet-efficientnet-lite0-")
