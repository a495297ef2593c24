"""Model specs through the API: parameters within each model's declaration, and only the
specs the operator admits (GPUFLEET_API_MODELS); a refused spec enqueues nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gpufleet.api.app import create_app
from gpufleet.errors import ConfigError
from tests.api.conftest import ApiServer, World, api_home, make_key

PLUGIN = "tests.e2e.plugins:FlakyTagger?heal_file=/nowhere"


def _codes(http: httpx.Client, specs: list[str]) -> dict[str, int]:
    return {spec: http.post("/v1/jobs", json={"items": ["a.jpg"], "model": spec}).status_code
            for spec in specs}


def test_out_of_range_parameters_get_422_and_enqueue_nothing(world: World) -> None:
    with world.client("a") as http:
        before = len(http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"])
        for spec, says in (
                ("synthetic?item_ms=-5", "item_ms=-5: expected 0 to 60000"),
                ("efficientnet-lite0?batch_size=1000000000&device=cuda:99", "batch_size="),
                ("synthetic?x=" + "1" * 300, "at most 256 characters"),
                (PLUGIN, "not accepted here")):
            response = http.post("/v1/jobs", json={"items": ["a.jpg"], "model": spec})
            assert response.status_code == 422, (spec, response.text)
            assert says in response.json()["detail"], response.text
        assert len(http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]) == before


def test_the_operator_restricts_the_specs_the_api_accepts(tmp_path: Path) -> None:
    # Given an API that admits synthetic with any valid parameters, one exact
    # efficientnet spec, and one plugin spec
    home = api_home(tmp_path, GPUFLEET_API_MODELS=f"synthetic, efficientnet-lite0?device=cpu,"
                                                  f"{PLUGIN}")
    _, key = make_key(home, "t", "submit,read")
    server = ApiServer(home.settings)
    try:
        with server.client(key) as http:
            codes = _codes(http, [
                "synthetic?item_ms=3", "synthetic?item_ms=-3", "efficientnet-lite0?device=cpu",
                "efficientnet-lite0", "efficientnet-lite0?device=cuda", PLUGIN,
                "tests.e2e.plugins:FlakyTagger?heal_file=/etc", "tests.e2e.plugins:FlakyTagger"])
            detail = http.post("/v1/jobs", json={"items": ["a"], "model": "efficientnet-lite0"}
                               ).json()["detail"]
    finally:
        server.stop()
        home.close()
    # Then only those are accepted
    assert codes == {
        "synthetic?item_ms=3": 201, "synthetic?item_ms=-3": 422,
        "efficientnet-lite0?device=cpu": 201, "efficientnet-lite0": 422,
        "efficientnet-lite0?device=cuda": 422, PLUGIN: 201,
        "tests.e2e.plugins:FlakyTagger?heal_file=/etc": 422,
        "tests.e2e.plugins:FlakyTagger": 422}
    assert detail.startswith("model 'efficientnet-lite0': not accepted here (accepted: ")


@pytest.mark.parametrize("setting", ["synthetic?item_ms=-1", "resnet-9000", "nope.module:X"])
def test_a_bad_operator_setting_stops_the_api_from_starting(tmp_path: Path,
                                                            setting: str) -> None:
    home = api_home(tmp_path, GPUFLEET_API_MODELS=setting)
    with pytest.raises(ConfigError, match=r"^GPUFLEET_API_MODELS: "):
        create_app(home.settings)
