"""Limits: rate per key (429 + Retry-After), body size (413), page size, items per job, CIDRs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import ApiServer, api_home, make_key


def _server(path: Path, **env: str) -> tuple[ApiServer, str]:
    home = api_home(path, **env)
    _, key = make_key(home, "t", "submit,read")
    return ApiServer(home.settings), key


@pytest.fixture
def servers() -> Iterator[list[ApiServer]]:
    started: list[ApiServer] = []
    yield started
    for server in started:
        server.stop()


def test_a_burst_over_the_rate_gets_429_with_retry_after(tmp_path: Path,
                                                         servers: list[ApiServer]) -> None:
    # Given a limit of 2 requests a second with bursts of 3, and a clock that stands still
    server, key = _server(tmp_path, GPUFLEET_API_RATE_PER_S="2", GPUFLEET_API_BURST="3")
    servers.append(server)
    with server.client(key) as http:
        # When 4 requests come at once
        codes = [http.get("/v1/jobs").status_code for _ in range(4)]
        refused = http.get("/v1/jobs")
        # Then the burst passes and the rest are refused, saying when to come back
        assert codes == [200, 200, 200, 429]
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        # And another key has its own bucket
        _, other = make_key(api_home(tmp_path), "t", "read")
        assert http.get("/v1/jobs", headers={"Authorization": f"Bearer {other}"}
                        ).status_code == 200
        # And half a second later (2 per second) one more request passes
        server.clock.advance(0.5)
        assert http.get("/v1/jobs").status_code == 200
        assert http.get("/v1/jobs").status_code == 429
    with server.client() as anonymous:
        assert "gpufleet_api_rate_limited_total 3.0" in anonymous.get("/metrics").text


def test_an_oversize_body_gets_413(tmp_path: Path, servers: list[ApiServer]) -> None:
    server, key = _server(tmp_path, GPUFLEET_API_MAX_BODY_BYTES="1000")
    servers.append(server)
    body = {"items": [f"photo-{i:05d}.jpg" for i in range(200)]}
    with server.client(key) as http:
        # When the body says it is too long
        assert http.post("/v1/jobs", json=body).status_code == 413

        # And when it streams without a length
        def chunks() -> Iterator[bytes]:
            yield b'{"items": ['
            yield b'"x.jpg", ' * 200
            yield b'"y.jpg"]}'

        response = http.post("/v1/jobs", content=chunks(),
                             headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and "1,000 bytes" in response.json()["detail"]
        # While a small body is fine
        assert http.post("/v1/jobs", json={"items": ["a.jpg"], "model": "synthetic"}
                         ).status_code == 201


def test_page_size_and_items_per_job_are_capped(tmp_path: Path,
                                                servers: list[ApiServer]) -> None:
    server, key = _server(tmp_path, GPUFLEET_API_MAX_PAGE="5", GPUFLEET_API_MAX_ITEMS="12")
    servers.append(server)
    with server.client(key) as http:
        job = http.post("/v1/jobs", json={"items": [f"{i:02d}.jpg" for i in range(12)],
                                          "model": "synthetic"}).json()["job"]
        # When far more than the maximum page is asked for
        page = http.get(f"/v1/jobs/{job}/items", params={"limit": 10_000}).json()
        # Then the page holds the maximum, and says where to go on
        assert len(page["items"]) == 5 and page["next"]
        # And a job over the item limit is refused whole
        big = http.post("/v1/jobs", json={"items": [f"{i}.jpg" for i in range(13)]})
        assert big.status_code == 422 and "over the limit of 12" in big.json()["detail"]


def _get(server: ApiServer, key: str, **headers: str) -> int:
    with server.client(key, **headers) as http:
        return http.get("/v1/jobs").status_code


def test_client_addresses_are_checked_against_allow_and_deny_lists(
        tmp_path: Path, servers: list[ApiServer]) -> None:
    # The test client connects from 127.0.0.1.
    deny, key = _server(tmp_path / "deny", GPUFLEET_API_DENY="127.0.0.0/8")
    allow_other, key2 = _server(tmp_path / "allow", GPUFLEET_API_ALLOW="10.0.0.0/8")
    proxied, key3 = _server(tmp_path / "proxy", GPUFLEET_API_ALLOW="10.1.2.0/24",
                            GPUFLEET_API_TRUSTED_PROXIES="127.0.0.1/32")
    servers.extend([deny, allow_other, proxied])
    # Denied, and not allowed: 403 before any key is looked at
    assert _get(deny, key) == 403
    assert _get(allow_other, key2) == 403
    with allow_other.client() as anonymous:
        assert anonymous.get("/healthz").status_code == 403
    # A forwarded address is believed from a trusted proxy only: the right-most untrusted hop
    assert _get(proxied, key3, **{"X-Forwarded-For": "10.1.2.3"}) == 200
    assert _get(proxied, key3, **{"X-Forwarded-For": "10.1.2.3, 192.0.2.7"}) == 403
    assert _get(proxied, key3) == 403
    assert _get(allow_other, key2, **{"X-Forwarded-For": "10.1.2.3"}) == 403


def test_an_ipv4_rule_holds_for_the_ipv4_mapped_form_of_the_address(
        tmp_path: Path, servers: list[ApiServer]) -> None:
    # Given a deny rule for one IPv4 client, behind a trusted proxy
    server, key = _server(tmp_path / "mapped", GPUFLEET_API_DENY="203.0.113.7/32",
                          GPUFLEET_API_TRUSTED_PROXIES="127.0.0.1/32")
    servers.append(server)
    # When the proxy reports it in its IPv4-mapped IPv6 form, in either spelling
    for spelling in ("::ffff:203.0.113.7", "::ffff:cb00:7107", "203.0.113.7"):
        # Then the rule holds
        assert _get(server, key, **{"X-Forwarded-For": spelling}) == 403, spelling
    # While its neighbour, mapped or not, is served
    assert _get(server, key, **{"X-Forwarded-For": "::ffff:203.0.113.8"}) == 200


def test_bad_network_settings_are_refused_at_start(tmp_path: Path) -> None:
    from gpufleet.api.app import create_app
    from gpufleet.errors import ConfigError

    home = api_home(tmp_path, GPUFLEET_API_ALLOW="10.0.0.0/33")
    with pytest.raises(ConfigError, match="GPUFLEET_API_ALLOW"):
        create_app(home.settings)
