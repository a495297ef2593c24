"""Real servers for tests, each started on a free port: redis-server, PostgreSQL, moto (S3, SQS,
Kinesis), nats-server (JetStream).

The session fixtures at the bottom are imported by tests/conftest.py, so every
test can ask for ``redis_server``, ``moto_server`` (plus ``aws_env`` to point
boto3 at it), ``postgres_server`` or ``postgres_url`` (a fresh database), ``nats_server``.
A missing server binary is a test FAILURE naming the package to install,
never a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not listen on port {port} in {_START_TIMEOUT_S:.0f} s:\n"
                       + _tail(log))


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- redis-server ---------------------------------------------------------------------


class RedisServer:
    """A throwaway redis-server. stop() and start() keep its port and data directory."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not found: install it (apt-get install redis-server)",
                        pytrace=False)
        self.binary, self.dir, self.appendonly = binary, directory, appendonly
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.dir / "redis.log"
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if self.appendonly else "no", "--logfile", str(log)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_for_port(self.port, self.proc, "redis-server", log)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


# -- moto in server mode (S3, SQS, ...) -----------------------------------------------


class MotoServer:
    """moto's HTTP server: boto3 reaches it through AWS_ENDPOINT_URL_* like a real endpoint."""

    def __init__(self, directory: Path, *, tls: tuple[Path, Path] | None = None) -> None:
        """tls: a certificate and its key for HTTPS (see tls_certificate), else plain HTTP."""
        self.dir = directory
        self.port = free_port()
        self.tls = tls
        self.endpoint = (f"https://localhost:{self.port}" if tls
                         else f"http://127.0.0.1:{self.port}")
        self.proc: subprocess.Popen[bytes] | None = None
        # Everything boto3 needs, and nothing from the developer's own ~/.aws. Every
        # service goes to moto, so no test can ever reach a real AWS endpoint.
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ENDPOINT_URL_SQS": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(directory / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(directory / "no-aws-credentials"),
            # A proxy of the developer's own must not stand between the tests and moto.
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def start(self) -> None:
        try:
            import moto.server  # noqa: F401
        except ImportError:
            pytest.fail("moto is not installed: pip install 'moto[server]'", pytrace=False)
        self.dir.mkdir(parents=True, exist_ok=True)
        log = self.dir / "moto.log"
        with open(log, "wb") as out:
            tls = ["-c", str(self.tls[0]), "-k", str(self.tls[1])] if self.tls else []
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port),
                 *tls], stdout=out, stderr=subprocess.STDOUT)
        _wait_for_port(self.port, self.proc, "moto server", log)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


def tls_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A certificate authority, and a server certificate it signed for localhost and
    127.0.0.1 with its key: (ca.pem, server.pem, server.key), written in directory."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gpufleet test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
              .issuer_name(ca_name).public_key(key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(hours=1))
              .not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([
                  x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                  critical=False)
              .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


# -- nats-server with JetStream ---------------------------------------------------------


class NatsServer:
    """A throwaway ``nats-server -js``, its JetStream store in a temporary directory."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            pytest.fail("nats-server not found: install it (apt-get install nats-server)",
                        pytrace=False)
        self.binary, self.dir = binary, directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.dir / "nats.log"
        args = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                "-sd", str(self.dir / "store"), "-l", str(log)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_for_port(self.port, self.proc, "nats-server", log)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


# -- PostgreSQL: a throwaway cluster made with initdb ---------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    path = found[-1] if found else shutil.which(name)
    if path is None:
        pytest.fail(f"PostgreSQL's {name} not found in /usr/lib/postgresql/*/bin or PATH: "
                    "install it (apt-get install postgresql)", pytrace=False)
    return path


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 only.

    initdb refuses to run as root, so as root the cluster belongs to the
    ``postgres`` user (created by Debian's postgresql package) and its commands
    run through runuser.
    """

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        self.initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        self.settings = settings or {}  # more server settings (-c name=value)
        self.dir = Path(tempfile.mkdtemp(prefix="gpufleet-pg-"))
        self.data, self.log = self.dir / "data", self.dir / "postgres.log"
        self.port = free_port()
        self.user = "postgres"
        self.url = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.fail("running as root needs runuser (util-linux) to start PostgreSQL "
                            "as the postgres user", pytrace=False)
            try:
                shutil.chown(self.dir, user="postgres", group=None)
            except LookupError:
                pytest.fail("no 'postgres' user to own the test cluster: "
                            "apt-get install postgresql creates it", pytrace=False)
            self._as = [runuser, "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}\n{_tail(self.log)}")

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._run(self.initdb, "-D", str(self.data), "-U", self.user, "-A", "trust",
                      "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        # Tuned for speed as an operator might tune for throughput: synchronous_commit=off
        # acknowledges commits before their WAL is written, so a crash (stop -m immediate)
        # loses them unless gpufleet asks for durable commits itself, as it must (issue 11).
        # fsync=off only matters to a crash of the machine, which no test makes.
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                   + "".join(f" -c {k}={v}" for k, v in self.settings.items()))
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", str(int(_START_TIMEOUT_S)), "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = "test_" + secrets.token_hex(6)
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} "
                             "dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} "
                             "dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# -- fixtures (imported by tests/conftest.py) -----------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Point this test's boto3 clients (and the CLI processes it starts) at moto."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.env.items():
        monkeypatch.setenv(name, value)
    return moto_server


@contextlib.contextmanager
def running_postgres(**options: Any) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster, started, then stopped and removed."""
    server = PostgresServer(**options)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's cluster, dropped afterwards."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
