"""Signed download URLs: good until they expire or their key is revoked, 403 after, 403 when
any part is altered; the redirect never names the host a client put in its Host header."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

from gpufleet.api.app import create_app
from gpufleet.api.keys import KeyStore
from gpufleet.api.signing import MAX_TTL_S, Signer
from gpufleet.errors import ConfigError
from tests.api.conftest import ApiServer, World, api_home, make_key


def _signed_url(world: World, key: str = "item-00006.bin") -> str:
    with world.client("a") as http:
        response = http.get(f"/v1/items/{world.jobs['a']}/{key}/download")
    assert response.status_code == 307
    return response.headers["location"]


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query=urlencode({**query, **changes})))


def test_a_signed_url_works_until_it_expires(world: World) -> None:
    # Given a signed URL, valid for the configured lifetime
    url = _signed_url(world)
    lifetime = world.home.settings.server.url_ttl_s
    with world.client() as http:
        # When it is used just before it expires, then it works
        world.server.clock.advance(lifetime - 1)
        assert http.get(url).status_code == 200
        # And just after, it is refused
        world.server.clock.advance(2)
        response = http.get(url)
    assert response.status_code == 403 and "expired" in response.json()["detail"]


def test_altering_any_part_of_a_signed_url_gets_403(world: World) -> None:
    url = _signed_url(world)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    signature, expires = query["signature"][0], query["expires"][0]
    altered = {
        "tenant": _with(url, tenant="b"),
        "key id": _with(url, kid=world.key_ids["b"]),
        "expiry": _with(url, expires=str(int(expires) + 3600)),
        "signature": _with(url, signature=("A" if signature[0] != "A" else "B") + signature[1:]),
        "no signature": urlunsplit(parts._replace(
            query=f"tenant=a&kid={query['kid'][0]}&expires={expires}")),
        "item key": url.replace("item-00006.bin", "item-00007.bin"),
        "job": url.replace(world.jobs["a"], world.jobs["b"]),
    }
    with world.client() as http:
        for name, bad in altered.items():
            assert bad != url, name
            # Then each altered URL is refused (422 when a part is missing altogether)
            assert http.get(bad).status_code == (422 if name == "no signature" else 403), name
        # While the untouched URL still works
        assert http.get(url).status_code == 200


def test_the_signed_url_lifetime_is_capped_at_seven_days() -> None:
    with pytest.raises(ConfigError, match="7 days"):
        Signer(b"k" * 32, ttl_s=MAX_TTL_S + 1)
    assert Signer(b"k" * 32, ttl_s=MAX_TTL_S).ttl_s == MAX_TTL_S


def test_a_signed_url_ends_when_its_key_is_revoked(world: World) -> None:
    # Given a signed URL asked for by a key of a's, and one asked for by another key of a's
    world.make_key("a-leaving", "a", "read")
    with world.client("a-leaving") as http:
        url = http.get(f"/v1/items/{world.jobs['a']}/item-00008.bin/download"
                       ).headers["location"]
    other = _signed_url(world, "item-00008.bin")
    with world.client() as anonymous:
        assert anonymous.get(url).status_code == 200
        # When the key is revoked (and the API's one-second belief in it has passed)
        index = world.home.index()
        try:
            KeyStore(index).revoke(world.key_ids["a-leaving"])
        finally:
            index.close()
        world.server.clock.advance(1.5)
        refused = anonymous.get(url)
        # Then its URL is refused, and the other key's still works
        assert anonymous.get(other).status_code == 200
    assert refused.status_code == 403 and "revoked" in refused.json()["detail"]


def test_the_redirect_never_takes_the_host_header(world: World, tmp_path: Path) -> None:
    # When a download is asked for with a hostile Host header
    with world.client("a", Host="evil.example") as http:
        relative = http.get(f"/v1/items/{world.jobs['a']}/item-00009.bin/download")
    # Then the redirect is relative to where the client really is
    assert relative.status_code == 307
    assert relative.headers["location"].startswith("/v1/signed/")
    # And with a public URL configured, it starts with that one
    home = api_home(tmp_path, GPUFLEET_API_PUBLIC_URL="https://fleet.example.com/api/")
    _, key = make_key(home, "t", "read")
    server = ApiServer(home.settings)
    try:
        index = home.index()
        try:
            job = index.create_job("j1", model="synthetic", input=home.settings.input + "t/",
                                   output=home.settings.output + "t/", keys=["k"], tenant="t")
            index.fail_pending("j1", ["k"], error="no such object")  # settled: downloadable
        finally:
            index.close()
        with server.client(key, Host="evil.example") as http:
            response = http.get(f"/v1/items/{job.id}/k/download")
    finally:
        server.stop()
        home.close()
    assert response.status_code == 307
    assert response.headers["location"].startswith(
        "https://fleet.example.com/api/v1/signed/j1/k?tenant=t&kid=")


@pytest.mark.parametrize("url", ["fleet.example.com", "ftp://x", "https://x/?a=b"])
def test_a_bad_public_url_stops_the_api_from_starting(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="GPUFLEET_API_PUBLIC_URL"):
        create_app(api_home(tmp_path, GPUFLEET_API_PUBLIC_URL=url).settings)
