"""The API on a PostgreSQL index: the same answers, and the same isolation, as on SQLite."""

from __future__ import annotations

from pathlib import Path

from gpufleet.index.migrate import upgrade
from tests.api.conftest import MODEL, ApiServer, api_home, make_key, run_worker, tenant_input
from tests.conftest import write_files


def test_jobs_items_search_and_keys_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    # Given an installation whose index is a migrated PostgreSQL database
    upgrade(postgres_url)
    home = api_home(tmp_path / "home", GPUFLEET_DB=postgres_url)
    photos = tenant_input(home, "t") / "photos"
    write_files(photos, 5)
    _, mine = make_key(home, "t", "submit,read")
    _, other = make_key(home, "u", "read")
    server = ApiServer(home.settings)
    try:
        with server.client(mine) as http:
            job = http.post("/v1/jobs", json={
                "items": [f"item-{i:05d}.bin" for i in range(5)], "model": MODEL,
                "input": "photos/"}).json()["job"]
            run_worker(home)
            # When the job, its items, one item and a search are asked for
            view = http.get(f"/v1/jobs/{job}").json()
            page = http.get(f"/v1/jobs/{job}/items", params={"limit": 2}).json()
            item = http.get(f"/v1/items/{job}/item-00003.bin").json()
            hits = http.get("/v1/search", params={"tag": item["tags"][0]["label"]}).json()
            # Then they are what SQLite gives
            assert (view["state"], view["done"]) == ("succeeded", 5)
            assert [i["key"] for i in page["items"]] == ["item-00000.bin", "item-00001.bin"]
            assert page["next"]
            assert (job, "item-00003.bin") in {(h["job"], h["key"]) for h in hits["items"]}
            assert http.get(f"/v1/items/{job}/item-00003.bin/download").status_code == 307
            # And the fleet's history and workers count the same
            history = http.get("/v1/fleet/history", params={"window_s": 600}).json()
            assert sum(p["done"] for p in history["series"]) == 5
            assert history["series"][-1]["backlog"] == 0
            assert [w["items"] for w in http.get("/v1/workers").json()["workers"]] == [5]
        # And another tenant's key finds nothing
        with server.client(other) as http:
            assert http.get(f"/v1/jobs/{job}").status_code == 404
            assert http.get(f"/v1/items/{job}/item-00003.bin").status_code == 404
    finally:
        server.stop()
        home.close()
