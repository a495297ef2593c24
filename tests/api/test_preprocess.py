"""Preprocessing chains through the API: built-in steps by default; a user step (code on the
workers) only as GPUFLEET_API_PREPROCESS_STEPS admits it, whether the body or the
manifest names it; a refused chain enqueues nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpufleet.api.app import create_app
from gpufleet.errors import ConfigError
from tests.api.conftest import ApiServer, api_home, make_key, tenant_input

USER_STEP = "tests.preprocess_plugins:invert"


def _codes(tmp_path: Path, setting: str | None, chains: list[str]) -> dict[str, tuple[int, str]]:
    env = {} if setting is None else {"GPUFLEET_API_PREPROCESS_STEPS": setting}
    home = api_home(tmp_path, **env)
    _, key = make_key(home, "t", "submit,read")
    server = ApiServer(home.settings)
    try:
        with server.client(key) as http:
            found = {}
            for chain in chains:
                response = http.post("/v1/jobs", json={"items": ["a.jpg"], "model": "synthetic",
                                                       "preprocess": chain})
                doc = response.json()
                found[chain] = (response.status_code,
                                doc.get("preprocess") or doc.get("detail", ""))
            jobs = http.get("/v1/jobs").json()["jobs"]
    finally:
        server.stop()
        home.close()
    assert len(jobs) == sum(code == 201 for code, _ in found.values())  # refused: no job
    return found


def test_built_in_steps_are_accepted_and_user_steps_refused_by_default(tmp_path: Path) -> None:
    found = _codes(tmp_path, None, ["EXIF,min-size=64,grayscale", USER_STEP, "exif,sharpen"])
    assert found["EXIF,min-size=64,grayscale"] == (201, "exif,min-size=64,grayscale")
    code, detail = found[USER_STEP]
    assert code == 422
    assert detail.startswith(f"preprocess step '{USER_STEP}' is not accepted here")
    assert found["exif,sharpen"][0] == 422
    assert "unknown preprocess step 'sharpen'" in found["exif,sharpen"][1]


def test_the_operator_admits_user_steps_by_name(tmp_path: Path) -> None:
    found = _codes(tmp_path, f"builtin,{USER_STEP}",
                   [f"exif,{USER_STEP}", "tests.preprocess_plugins:skip_wide", "grayscale"])
    assert found[f"exif,{USER_STEP}"] == (201, f"exif,{USER_STEP}")
    assert found["tests.preprocess_plugins:skip_wide"][0] == 422
    assert found["grayscale"][0] == 201


def test_the_operator_may_narrow_the_built_ins(tmp_path: Path) -> None:
    found = _codes(tmp_path, "exif,min-size", ["exif,min-size=10", "grayscale"])
    assert found["exif,min-size=10"][0] == 201
    assert found["grayscale"][0] == 422


def test_a_manifest_cannot_bring_a_user_step_in(tmp_path: Path) -> None:
    # Given a tenant's JSON manifest whose header names a user step the operator did not admit
    home = api_home(tmp_path)
    _, key = make_key(home, "t", "submit,read")
    folder = tenant_input(home, "t")
    folder.mkdir(parents=True)
    (folder / "m.json").write_text(json.dumps({"preprocess": USER_STEP, "items": ["a.jpg"]}))
    (folder / "ok.json").write_text(json.dumps({"preprocess": "exif", "items": ["a.jpg"]}))
    server = ApiServer(home.settings)
    try:
        with server.client(key) as http:
            refused = http.post("/v1/jobs", json={"manifest": "m.json", "model": "synthetic"})
            accepted = http.post("/v1/jobs", json={"manifest": "ok.json", "model": "synthetic"})
    finally:
        server.stop()
        home.close()
    # Then it is refused; a built-in chain from a manifest is taken
    assert refused.status_code == 422, refused.text
    assert "is not accepted here" in refused.json()["detail"]
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["preprocess"] == "exif"


@pytest.mark.parametrize("setting", ["sharpen", "pkg.mod:fn=1"])
def test_a_bad_operator_setting_stops_the_api_from_starting(tmp_path: Path,
                                                            setting: str) -> None:
    home = api_home(tmp_path, GPUFLEET_API_PREPROCESS_STEPS=setting)
    with pytest.raises(ConfigError, match=r"^GPUFLEET_API_PREPROCESS_STEPS: "):
        create_app(home.settings)
