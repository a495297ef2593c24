"""Signed download URLs: good until they expire, 403 after, 403 when any part is altered."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

from gpufleet.api.signing import MAX_TTL_S, Signer
from gpufleet.errors import ConfigError
from tests.api.conftest import World


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
    lifetime = world.home.settings.api_url_ttl_s
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
        "expiry": _with(url, expires=str(int(expires) + 3600)),
        "signature": _with(url, signature=("A" if signature[0] != "A" else "B") + signature[1:]),
        "no signature": urlunsplit(parts._replace(query=f"tenant=a&expires={expires}")),
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
