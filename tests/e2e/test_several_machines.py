"""Several machines: three workers, each in its own network namespace, one of them killed mid-job.

The "machines" are Linux network namespaces joined to this one by veth pairs
on a bridge. Redis (the queue), PostgreSQL (the index) and moto (S3: inputs
and results) listen on the bridge's address, so a worker reaches them only over
its veth link; nothing on this namespace's loopback is reachable from there.
Needs root and iproute2 (``ip netns``); without them the test fails, saying so.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from gpufleet.queue import QueueDepth, open_queue
from tests.conftest import PYTHONPATH, write_files
from tests.servers import PostgresServer, RedisServer, free_port

pytestmark = pytest.mark.slow  # half a minute or more: a PostgreSQL cluster, three workers

MODEL = "synthetic?item_ms=3"
ITEMS = 2000


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


class Network:
    """A bridge here, and one namespace per machine plugged into it by a veth pair."""

    def __init__(self, machines: int) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            pytest.fail("the several-machines test needs root and iproute2 (ip netns)",
                        pytrace=False)
        tag = secrets.token_hex(2)
        subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 250)}"
        self.host = f"{subnet}.1"
        self.bridge = f"gf{tag}br"
        self.namespaces = [f"gf{tag}m{k}" for k in range(machines)]
        _ip("link", "add", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.host}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for k, ns in enumerate(self.namespaces):
                here, there = f"gf{tag}h{k}", f"gf{tag}n{k}"
                _ip("netns", "add", ns)
                _ip("link", "add", here, "type", "veth", "peer", "name", there)
                _ip("link", "set", there, "netns", ns)
                _ip("link", "set", here, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{subnet}.{10 + k}/24", "dev", there)
                _ip("-n", ns, "link", "set", there, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)


def _wait_for(host: str, port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {host}:{port}")


class BridgedRedis(RedisServer):
    def __init__(self, directory: Path, host: str) -> None:
        super().__init__(directory)
        self.host, self.url = host, f"redis://{host}:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", self.host, "--protected-mode", "no",
             "--dir", str(self.dir), "--save", "", "--appendonly", "no",
             "--logfile", str(self.dir / "redis.log")], stdout=subprocess.DEVNULL)
        _wait_for(self.host, self.port, self.proc, "redis-server")


class BridgedPostgres(PostgresServer):
    """The shared throwaway cluster, listening on the bridge too and trusting its subnet."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host

    def start(self) -> None:
        self._run(self.initdb, "-D", str(self.data), "-U", self.user, "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        subnet = self.host.rsplit(".", 1)[0]
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {subnet}.0/24 trust\n")
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1,{self.host} "
                   "-c fsync=off -c synchronous_commit=off -c max_connections=200")
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")


@pytest.fixture
def network() -> Iterator[Network]:
    net = Network(3)
    yield net
    net.close()


def _env(tmp: Path, net: Network, redis: BridgedRedis, db: str, moto_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GPUFLEET_", "AWS_")) and k.lower() not in (
               "http_proxy", "https_proxy", "all_proxy")}
    env.update(PYTHONPATH=PYTHONPATH, GPUFLEET_QUEUE=redis.url, GPUFLEET_DB=db,
               GPUFLEET_INPUT="s3://fleet/in/", GPUFLEET_OUTPUT="s3://fleet/results/",
               GPUFLEET_VISIBILITY_TIMEOUT_S="4", GPUFLEET_DRAIN_GRACE_S="5",
               AWS_ENDPOINT_URL_S3=f"http://{net.host}:{moto_port}", AWS_DEFAULT_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_CONFIG_FILE=str(tmp / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp / "none"))
    return env


def _cli(env: dict[str, str], *args: str | Path) -> str:
    result = subprocess.run([sys.executable, "-m", "gpufleet", *map(str, args)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"gpufleet {args}: {result.stdout}{result.stderr}"
    return result.stdout


def test_three_machines_one_killed_every_item_exactly_once(network: Network,
                                                           tmp_path: Path) -> None:
    # Given Redis, PostgreSQL and S3 (moto) reachable on the bridge, and three machines
    redis = BridgedRedis(tmp_path / "redis", network.host)
    postgres = BridgedPostgres(network.host)
    moto_port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", network.host, "-p",
                             str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        redis.start()
        postgres.start()
        _wait_for(network.host, moto_port, moto, "moto server")
        db = postgres.create_database().replace("@127.0.0.1:", f"@{network.host}:")
        env = _env(tmp_path, network, redis, db, moto_port)
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="fleet")
        _cli(env, "init")
        # And a job of 2000 items, uploaded to S3 and queued on Redis
        keys = write_files(tmp_path / "photos", ITEMS)
        job = json.loads(_cli(env, "submit", tmp_path / "photos", "--model", MODEL,
                              "--json"))["job"]
        # When a worker runs on each machine, reaching the services only over its link
        for k, ns in enumerate(network.namespaces):
            home = tmp_path / f"machine-{k}"
            home.mkdir()
            with open(home / "worker.log", "wb") as log:
                workers.append(subprocess.Popen(
                    ["ip", "netns", "exec", ns, sys.executable, "-m", "gpufleet", "worker",
                     "--model", MODEL, *([] if k == 0 else ["--max-idle", "6"])],
                    env={**env, "GPUFLEET_HOME": str(home)}, stdout=log,
                    stderr=subprocess.STDOUT))

        def status() -> dict[str, object]:
            return dict(json.loads(_cli(env, "status", job, "--json")))

        deadline = time.monotonic() + 240
        while int(str(status()["done"])) < ITEMS // 4:
            assert time.monotonic() < deadline, "the job did not start: " + _logs(tmp_path)
            time.sleep(0.3)
        # And one machine's worker is killed without warning, holding leases
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        # Then the other two finish the job
        while status()["state"] != "succeeded":
            assert time.monotonic() < deadline, f"job stuck at {status()}: " + _logs(tmp_path)
            time.sleep(0.5)
        for worker in workers[1:]:
            assert worker.wait(timeout=120) == 0, _logs(tmp_path)
        # With exactly one result row per item in PostgreSQL
        rows = [json.loads(line)
                for line in _cli(env, "results", job, "-f", "jsonl").splitlines()]
        assert sorted(r["key"] for r in rows) == sorted(keys)
        assert {r["status"] for r in rows} == {"done"}
        # And exactly one result object per item in S3
        listed = [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket="fleet", Prefix=f"results/{job}/") for obj in page.get("Contents", [])]
        assert sorted(listed) == sorted(f"results/{job}/{k}.json" for k in keys)
        # And every machine did part of the work, the killed one included
        workers_seen = {json.loads(s3.get_object(Bucket="fleet", Key=key)["Body"].read())[
            "worker"] for key in listed}
        assert len(workers_seen) == 3
        # And nothing is left on the queue
        queue = open_queue(redis.url, name=MODEL)
        assert queue.depth() == QueueDepth(queued=0, in_flight=0, dead=0)
        queue.close()
        s3.close()
    finally:
        for proc in [*workers, moto]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        redis.stop()
        postgres.stop()
        postgres.remove()


def _logs(tmp: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-2000:]
                     for p in sorted(tmp.glob("machine-*/worker.log")))
