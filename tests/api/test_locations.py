"""Tenants own their locations: nothing outside them is read or written through the API,
and no refusal carries another tenant's bytes, keys or paths."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from gpufleet.api.locations import TenantLocations, parse_grants
from gpufleet.config import ServerSettings, Settings
from gpufleet.errors import ConfigError
from tests.api.conftest import MODEL, ApiServer, World, api_home, make_key, tenant_input


def test_another_tenants_objects_and_results_cannot_be_named(world: World) -> None:
    # Given a secret in a text file of tenant a, and a's photos and results
    secret = secrets.token_hex(16)
    a_input = tenant_input(world.home, "a")
    (a_input / "notes.txt").write_text(f"{secret}\n")
    a_root = a_input.as_uri() + "/"
    results = world.home.settings.output
    attempts = {
        "a's file as b's manifest": {"manifest": a_root + "notes.txt"},
        "a's file, relative with '..'": {"manifest": "../a/notes.txt"},
        "a's photos as b's items": {"items": ["photos/item-00001.bin"], "input": a_root},
        "a's photos through '..'": {"items": ["item-00001.bin"], "input": "../a/photos/"},
        "a's photos through b/..": {
            "items": ["item-00001.bin"],
            "input": tenant_input(world.home, "b").as_uri() + "/../a/photos/"},
        "the results as input": {"items": [f"a/{world.jobs['a']}/item-00001.bin.json"],
                                 "input": results},
        "a's results as b's output": {"items": ["photos/item-00001.bin"],
                                      "output": results + "a/"},
        "the whole input location": {"items": ["a/notes.txt"],
                                     "input": world.home.settings.input},
        "a sibling prefix": {"items": ["x"], "input": a_root.rstrip("/") + "x/"},
    }
    with world.client("b") as http:
        before = len(http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"])
        for name, body in attempts.items():
            # When b names them
            response = http.post("/v1/jobs", json={"model": MODEL, **body})
            # Then each is refused, and the answer carries none of a's bytes or job ids
            assert response.status_code == 422, (name, response.text)
            assert secret not in response.text and world.jobs["a"] not in response.text, name
        # And no job was made
        assert len(http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]) == before


def test_a_tenants_own_relative_locations_are_its_sub_prefixes(world: World) -> None:
    # When a submits with relative locations
    job = world.submit("a", {"items": ["item-00001.bin"], "input": "photos/",
                             "output": "runs/1/", "model": MODEL})
    # Then they lie under a's own input and output roots, and the view shows them relative
    assert (job["input"], job["output"]) == ("photos/", "runs/1/")
    index = world.home.index()
    try:
        stored = index.job(job["job"])
    finally:
        index.close()
    assert stored.input == tenant_input(world.home, "a").joinpath("photos").as_uri() + "/"
    assert stored.output == world.home.settings.output + "a/runs/1/"


def test_an_operator_grants_a_tenant_more_locations(tmp_path: Path) -> None:
    # Given a shared folder granted to tenant t only
    shared = tmp_path / "shared"
    shared.mkdir()
    home = api_home(tmp_path / "home", GPUFLEET_API_LOCATIONS=f"t={shared.as_uri()}/")
    _, t_key = make_key(home, "t", "submit,read")
    _, u_key = make_key(home, "u", "submit,read")
    server = ApiServer(home.settings)
    body = {"items": ["x.bin"], "input": shared.as_uri() + "/", "model": MODEL}
    try:
        # When t and u submit jobs reading it
        with server.client(t_key) as http:
            granted = http.post("/v1/jobs", json=body)
        with server.client(u_key) as http:
            refused = http.post("/v1/jobs", json=body)
    finally:
        server.stop()
        home.close()
    # Then t may, and u may not
    assert granted.status_code == 201, granted.text
    assert refused.status_code == 422 and "not one of this tenant's" in refused.json()["detail"]


@pytest.mark.parametrize("text", ["s3://bucket/", "t=", "=s3://b/", "../x=s3://b/"])
def test_a_grant_must_name_a_tenant_and_a_location(text: str) -> None:
    with pytest.raises(ConfigError, match=r"GPUFLEET_API_LOCATIONS|tenant"):
        parse_grants(text)


def test_s3_locations_are_compared_without_opening_a_store(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, input="s3://in/data/", output="s3://out/",
                        server=ServerSettings(locations="t=s3://shared/t/"))
    where = TenantLocations(settings)
    assert where.resolve("t", "photos/", what="input", use="input") == "s3://in/data/t/photos/"
    assert where.resolve("t", "s3://shared/t/x/", what="input", use="input") == \
        "s3://shared/t/x/"
    for other in ("s3://in/data/u/", "s3://in/data/", "s3://shared/", "s3://in/data/t/../u/"):
        with pytest.raises(ConfigError):
            where.resolve("t", other, what="input", use="input")
