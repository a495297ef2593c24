"""Per-tenant quotas on open work: jobs, items and distinct model specs (429 with the
reason; a job no quota could hold is 422), concurrent submissions included; another
tenant is never affected. No worker runs, so every job stays open until cancelled."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ApiServer, api_home, make_key


class Api:
    def __init__(self, path: Path, **env: str) -> None:
        self.home = api_home(path, **env)
        self.keys = {t: make_key(self.home, t, "submit,read")[1] for t in ("x", "y")}
        self.server = ApiServer(self.home.settings)

    def post(self, tenant: str, items: int = 1, model: str = "synthetic") -> httpx.Response:
        with self.server.client(self.keys[tenant]) as http:
            return http.post("/v1/jobs", json={"items": [f"k{i}" for i in range(items)],
                                               "model": model})

    def cancel(self, tenant: str, job: str) -> None:
        with self.server.client(self.keys[tenant]) as http:
            assert http.delete(f"/v1/jobs/{job}").status_code == 200


@pytest.fixture
def api(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Api]:
    started = Api(tmp_path, **request.param)
    yield started
    started.server.stop()
    started.home.close()


@pytest.mark.parametrize("api", [{"GPUFLEET_API_MAX_OPEN_JOBS": "2"}], indirect=True)
def test_open_jobs_per_tenant_are_bounded_until_one_ends(api: Api) -> None:
    first, second = api.post("x"), api.post("x")
    refused = api.post("x")
    assert (first.status_code, second.status_code) == (201, 201)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    assert refused.json()["detail"] == ("you have 2 open jobs, the limit "
                                        "(GPUFLEET_API_MAX_OPEN_JOBS); wait for some to end")
    assert api.post("y").status_code == 201  # another tenant's own quota
    api.cancel("x", first.json()["job"])  # a cancelled job is no longer open
    assert api.post("x").status_code == 201


@pytest.mark.parametrize("api", [{"GPUFLEET_API_MAX_OPEN_ITEMS": "10"}], indirect=True)
def test_open_items_per_tenant_are_bounded(api: Api) -> None:
    too_big = api.post("x", items=11)
    assert too_big.status_code == 422
    assert too_big.json()["detail"].startswith("11 items: over the 10 a tenant may have open")
    assert [api.post("x", items=n).status_code for n in (6, 4)] == [201, 201]
    refused = api.post("x", items=1)
    assert refused.status_code == 429
    assert refused.json()["detail"].startswith("your open jobs hold 10 items; 1 more is over")
    assert api.post("y", items=10).status_code == 201


@pytest.mark.parametrize("api", [{"GPUFLEET_API_MAX_OPEN_ITEMS": "10"}], indirect=True)
def test_concurrent_submissions_cannot_all_pass_the_check(api: Api) -> None:
    # When eight jobs of 6 items are submitted at once, when only 10 items may be open
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: api.post("x", items=6).status_code, range(8)))
    # Then exactly one is accepted
    assert codes == [201] + [429] * 7


@pytest.mark.parametrize("api", [{"GPUFLEET_API_MAX_MODELS": "2"}], indirect=True)
def test_a_tenants_open_jobs_name_at_most_max_models_specs(api: Api) -> None:
    codes = [api.post("x", model=f"synthetic?item_ms={n}").status_code for n in (1, 2, 1)]
    refused = api.post("x", model="synthetic?item_ms=3")
    # Then a third spec is refused with the reason, the first two are still taken,
    # and another tenant is unaffected
    assert codes == [201, 201, 201]
    assert refused.status_code == 429
    assert "2 distinct model specs, the limit (GPUFLEET_API_MAX_MODELS)" in refused.json()["detail"]
    assert api.post("y", model="synthetic?item_ms=3").status_code == 201
