"""The API's documentation pages work offline: every script, style and icon they load is
served by the API itself, none from a CDN."""

from __future__ import annotations

import re

import pytest

from tests.api.conftest import World


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_load_everything_from_the_api(world: World, page: str) -> None:
    with world.client() as http:
        html = http.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert assets, html.text
        assert not [a for a in assets if "://" in a or a.startswith("//")], assets
        for asset in assets:
            assert http.get(asset).status_code == 200, asset
        # And the description they render is the API's own
        assert "/openapi.json" in html.text
        assert http.get("/openapi.json").json()["info"]["title"] == "gpufleet"
