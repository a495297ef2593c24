"""Keys: missing, malformed, unknown, revoked, wrong-scope and in-URL keys are refused."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from gpufleet.api.app import KEY_CACHE_S
from tests.api.conftest import World


def test_requests_without_a_usable_key_get_401(world: World) -> None:
    key = world.keys["a"]
    path = f"/v1/jobs/{world.jobs['a']}"
    headers = {
        "missing": {},
        "not bearer": {"Authorization": f"Basic {key}"},
        "bare bearer": {"Authorization": "Bearer"},
        "not a key": {"Authorization": "Bearer hunter2"},
        "unknown id": {"Authorization": "Bearer gfk_000000000000_" + key[-43:]},
        "wrong secret": {"Authorization": f"Bearer {key[:-4]}AAAA"},
    }
    with world.client() as http:
        for name, h in headers.items():
            # When the job is asked for with each
            response = http.get(path, headers=h)
            # Then it is 401 with a Bearer challenge
            assert response.status_code == 401, name
            assert response.headers["www-authenticate"] == "Bearer", name


def test_a_key_in_the_query_string_is_refused_even_with_a_good_header(world: World) -> None:
    key = world.keys["a"]
    with world.client("a") as http:
        for params in ({"api_key": key}, {"key": "x"}, {"token": "x"}, {"limit": key}):
            response = http.get("/v1/jobs", params=params)
            assert response.status_code == 401, params
            assert "Authorization" in response.json()["detail"]


def test_a_key_without_the_scope_gets_403(world: World) -> None:
    with world.client("a-read") as http:
        assert http.post("/v1/jobs", json={"items": ["x.jpg"]}).status_code == 403
        assert http.delete(f"/v1/jobs/{world.jobs['a']}").status_code == 403
        assert http.get("/v1/dlq").status_code == 403
        assert http.get(f"/v1/jobs/{world.jobs['a']}").status_code == 200
    with world.client("a-submit") as http:
        assert http.get(f"/v1/jobs/{world.jobs['a']}").status_code == 403
        assert http.post("/v1/dlq/redrive").status_code == 403


def test_keys_cli_creates_lists_and_revokes_and_a_revoked_key_is_refused(world: World) -> None:
    # Given a key made with the CLI
    made = json.loads(world.home.run("keys", "create", "--tenant", "a", "--scope", "read",
                                     "--json").stdout)
    assert set(made) == {"id", "key", "tenant", "scopes"}
    assert (made["tenant"], made["scopes"]) == ("a", ["read"])
    with world.client() as http:
        auth = {"Authorization": f"Bearer {made['key']}"}
        assert http.get("/v1/jobs", headers=auth).status_code == 200
        # When it is revoked
        listed = json.loads(world.home.run("keys", "list", "--json").stdout)
        assert made["id"] in [k["id"] for k in listed]
        assert all("key" not in k for k in listed)
        world.home.run("keys", "revoke", made["id"])
        # Then it is refused once the API's belief in it (KEY_CACHE_S) has run out
        world.server.clock.advance(KEY_CACHE_S + 0.001)
        assert http.get("/v1/jobs", headers=auth).status_code == 401
    # And bad input to the CLI is one line, not a traceback
    bad = world.home.run("keys", "create", "--tenant", "a", "--scope", "root", check=False)
    assert bad.returncode == 1 and "scopes must be some of" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = world.home.run("keys", "revoke", "nope", check=False)
    assert unknown.returncode == 1 and "no API key" in unknown.stderr


def _grep(needle: str, files: list[Path]) -> bool:
    # In another process: opening and closing the database here would drop this process's
    # SQLite locks on it (POSIX locks belong to the process, not to the file descriptor).
    # -e: a secret may start with "-" (one in 64), which grep would take for an option.
    result = subprocess.run(["grep", "-a", "-q", "-F", "-e", needle, *map(str, files)],
                            check=False)
    assert result.returncode in (0, 1), "grep failed"
    return result.returncode == 0


def test_no_key_is_stored_in_the_index(world: World) -> None:
    # Given every key the world made (and used)
    files = [p for p in world.home.path.glob("index.db*") if p.is_file()]
    assert files
    for name, key in world.keys.items():
        secret = key[len("gfk_") + 12 + 1:]  # gfk_<12 hex id>_<secret>
        assert len(secret) == 43
        # Then neither the key nor its secret part is anywhere in the index's files
        assert not _grep(key, files), name
        assert not _grep(secret, files), name
        # While its public id is (it finds the row)
        assert _grep(world.key_ids[name], files), name


def test_a_body_without_a_valid_key_is_refused_before_it_is_read(world: World) -> None:
    # Given a client that announces a 30 MB body but sends none of it
    host, port = world.server.url.removeprefix("http://").split(":")
    for auth in (b"", b"Authorization: Bearer gfk_000000000000_" + b"x" * 43 + b"\r\n"):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: api\r\n"
                         b"Content-Type: application/json\r\n"
                         + auth + b"Content-Length: 31457280\r\n\r\n")
            # When the API answers (it has nothing of the body to read)
            data = b""
            while not data.endswith(b"}"):
                chunk = sock.recv(65536)
                assert chunk, data
                data += chunk
            answer = data.decode("latin-1")
        # Then the answer is a 401 at once, not a wait for the body
        assert answer.startswith("HTTP/1.1 401"), answer
        assert "valid API key" in answer
