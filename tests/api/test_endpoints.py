"""Every endpoint through a real server: jobs, items, search, downloads, health, metrics."""

from __future__ import annotations

import json
import re

from gpufleet.api.app import STATIC
from gpufleet.models.base import parse_spec
from gpufleet.queue import open_queue
from tests.api.conftest import ITEMS, MODEL, PAGE_MAX, World, run_worker, tenant_input


def test_a_job_view_has_state_counts_rate_eta_and_cost(world: World) -> None:
    # Given tenant a's job, processed by a real worker (one of its objects is missing)
    # When it is read
    with world.client("a") as http:
        view = http.get(f"/v1/jobs/{world.jobs['a']}").json()
    # Then it is partial, with its counts, a rate from item timings, no ETA, and a cost
    assert view["job"] == world.jobs["a"]
    assert (view["state"], view["total"], view["done"], view["failed"], view["pending"]) == (
        "partial", ITEMS + 1, ITEMS, 1, 0)
    assert view["rate_per_s"] > 0 and view["eta_s"] is None
    assert view["cost_so_far"] is not None and view["cost_so_far"] >= 0
    assert view["model"] == MODEL and view["cancelled"] == 0


def test_submitting_items_returns_201_and_the_queued_job(world: World) -> None:
    # Given a key with the submit scope
    # When it submits two items with a deadline and a priority
    job = world.submit("a", {"items": ["x.jpg", "y.jpg", "x.jpg"], "model": "synthetic",
                             "deadline_s": 600, "priority": 3})
    # Then the job is queued with its items (duplicates collapsed) and its options
    assert (job["state"], job["total"], job["pending"]) == ("queued", 2, 2)
    assert (job["deadline_s"], job["priority"]) == (600, 3)


def test_submitting_a_manifest_location_reads_it_from_the_store(world: World) -> None:
    # Given a manifest object in the input location
    manifest = tenant_input(world.home, "a") / "manifests" / "m.jsonl"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text('"a.jpg"\n{"key": "b/c.jpg"}\n')
    # When it is submitted by location, absolute or relative to the tenant's input
    job = world.submit("a", {"manifest": manifest.as_uri(), "model": "synthetic"})
    assert world.submit("a", {"manifest": "manifests/m.jsonl", "model": "synthetic"}
                        )["total"] == 2
    # Then the job has its two items
    assert job["total"] == 2
    with world.client("a") as http:
        page = http.get(f"/v1/jobs/{job['job']}/items").json()
    assert [i["key"] for i in page["items"]] == ["a.jpg", "b/c.jpg"]


def test_bad_submissions_are_refused_with_one_line_reasons(world: World) -> None:
    with world.client("a") as http:
        cases = {
            "neither": {"model": "synthetic"},
            "both": {"items": ["a.jpg"], "manifest": "file:///m.json"},
            "unsafe key": {"items": ["../etc/passwd"]},
            "plugin model": {"items": ["a.jpg"], "model": "os:system"},
            "bad model parameter": {"items": ["a.jpg"], "model": "synthetic?item_ms=fast"},
            "outside locations": {"items": ["a.jpg"], "input": "file:///etc/"},
            "missing manifest": {"manifest": world.home.settings.input + "nope.json"},
            "unknown field": {"items": ["a.jpg"], "colour": "blue"},
        }
        for name, body in cases.items():
            # When each bad body is posted
            response = http.post("/v1/jobs", json=body)
            # Then it is refused with 422 and a one-line detail
            assert response.status_code == 422, (name, response.text)
            assert "\n" not in response.json()["detail"], name


def test_jobs_are_listed_newest_first_by_cursor(world: World) -> None:
    # Given tenant b has at least one job
    with world.client("b") as http:
        first = http.get("/v1/jobs", params={"limit": 1}).json()
        everything = http.get("/v1/jobs", params={"limit": 1000}).json()
    # Then pages follow the newest-first order, and only b's jobs are listed
    assert first["jobs"][0]["job"] == everything["jobs"][0]["job"]
    assert world.jobs["b"] in [j["job"] for j in everything["jobs"]]
    assert world.jobs["a"] not in [j["job"] for j in everything["jobs"]]


def test_items_are_paged_by_cursor_and_filtered(world: World) -> None:
    job = world.jobs["a"]
    with world.client("a") as http:
        # When every page of 7 is read
        keys, cursor = [], None
        while True:
            page = http.get(f"/v1/jobs/{job}/items",
                            params={"limit": 7, **({"cursor": cursor} if cursor else {})}).json()
            keys += [i["key"] for i in page["items"]]
            cursor = page["next"]
            if not cursor:
                break
        # Then every item comes once, in key order
        assert keys == sorted(keys) and len(keys) == len(set(keys)) == ITEMS + 1
        # And the filters narrow the listing
        failed = http.get(f"/v1/jobs/{job}/items", params={"status": "failed"}).json()
        assert [(i["key"], i["status"]) for i in failed["items"]] == [("missing.bin", "failed")]
        top = http.get(f"/v1/items/{job}/{keys[0]}").json()["tags"][0]
        tagged = http.get(f"/v1/jobs/{job}/items", params={"tag": top["label"].upper()}).json()
        assert keys[0] in [i["key"] for i in tagged["items"]]
        strict = http.get(f"/v1/jobs/{job}/items",
                          params={"tag": top["id"], "min_score": top["score"] + 0.0001}).json()
        assert keys[0] not in [i["key"] for i in strict["items"]]
        # And a cursor that is not ours is a 400
        assert http.get(f"/v1/jobs/{job}/items", params={"cursor": "!!"}).status_code == 400


def test_an_item_is_its_result(world: World) -> None:
    with world.client("a") as http:
        item = http.get(f"/v1/items/{world.jobs['a']}/item-00003.bin").json()
        missing = http.get(f"/v1/items/{world.jobs['a']}/no-such.bin")
    assert (item["key"], item["status"], len(item["tags"])) == ("item-00003.bin", "done", 5)
    assert missing.status_code == 404


def test_download_redirects_to_a_signed_url_that_serves_the_result_object(world: World) -> None:
    job = world.jobs["a"]
    with world.client("a") as http:
        # When the download of an item is asked for
        redirect = http.get(f"/v1/items/{job}/item-00004.bin/download")
        assert redirect.status_code == 307
        url = redirect.headers["location"]
    # Then the signed URL serves the item's result object, with no key
    with world.client() as anonymous:
        response = anonymous.get(url)
    assert response.status_code == 200
    stored = world.home.path / "buckets" / "results" / "a" / job / "item-00004.bin.json"
    assert response.json() == json.loads(stored.read_text())


def test_search_finds_a_tag_across_the_tenants_jobs(world: World) -> None:
    with world.client("a") as http:
        top = http.get(f"/v1/items/{world.jobs['a']}/item-00005.bin").json()["tags"][0]
        # When a's jobs are searched for that tag
        hits = http.get("/v1/search", params={"tag": top["label"], "limit": PAGE_MAX}).json()
        high = http.get("/v1/search", params={"tag": top["id"], "min_score": 1.01}).json()
    # Then the item is found with its score, and only in a's jobs (b has the same objects)
    found = {(h["job"], h["key"]): h["score"] for h in hits["items"]}
    assert found[world.jobs["a"], "item-00005.bin"] == top["score"]
    with world.client("a") as http:
        mine = {j["job"] for j in http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]}
    assert {job for job, _ in found} <= mine and world.jobs["b"] not in mine
    assert high["items"] == []


def test_cancel_drops_queued_tasks_and_workers_skip_them(world: World) -> None:
    # Given a job of 3 tasks on its own model queue, and no worker yet (its objects do not
    # exist: an item that was processed would show as failed)
    model = "synthetic?item_ms=2"
    job = world.submit("a", {"items": [f"k{i}.bin" for i in range(70)], "model": model})
    # When it is cancelled
    with world.client("a") as http:
        cancelled = http.delete(f"/v1/jobs/{job['job']}")
        # Then it is cancelled at once, and a repeat is harmless
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        assert http.delete(f"/v1/jobs/{job['job']}").json()["state"] == "cancelled"
    # And a worker acks its queued tasks without processing any item
    run_worker(world.home, model)
    queue = open_queue(world.home.settings.queue, name=model)
    depth = queue.depth()
    queue.close()
    assert (depth.queued, depth.in_flight, depth.dead) == (0, 0, 0)
    with world.client("a") as http:
        view = http.get(f"/v1/jobs/{job['job']}").json()
        assert (view["state"], view["done"], view["failed"]) == ("cancelled", 0, 0)
        # And a finished job cannot be cancelled
        assert http.delete(f"/v1/jobs/{world.jobs['a']}").status_code == 409


def test_health_readiness_metrics_fleet_and_dashboard(world: World) -> None:
    with world.client() as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        ready = anonymous.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready",
                                "checks": {"queue": "ok", "index": "ok", "store": "ok"}}
        metrics = anonymous.get("/metrics").text
        assert 'gpufleet_api_requests_total{method="GET",route="/healthz",status="200"}' in metrics
        assert "gpufleet_api_request_duration_seconds_bucket" in metrics
        # (only the models an operator configured: never a tenant's own spec)
        # (by its name, not its spec with parameters: one series per model, not per spelling)
        operator_model = parse_spec(world.home.settings.model)[0]
        assert f'gpufleet_queue_tasks{{model="{operator_model}",state="dead"}} 0.0' in metrics
        assert MODEL not in metrics
        # (recounted from the index, so it can go down after a redrive: a gauge)
        assert "# TYPE gpufleet_items gauge" in metrics
        assert 'gpufleet_items{status="failed"}' in metrics
        dashboard = anonymous.get("/dashboard/")
        assert dashboard.status_code == 200 and "app.js" in dashboard.text
        assert anonymous.get("/no/such/page").status_code == 404
        metrics = anonymous.get("/metrics").text
        # (static files by the path they are mounted at; what matched nothing, unmatched)
        assert 'gpufleet_api_requests_total{method="GET",route="/dashboard",status="200"}' \
            in metrics
        assert 'gpufleet_api_requests_total{method="GET",route="unmatched",status="404"}' \
            in metrics
        # Every script and style is the API's own: nothing is fetched from elsewhere
        for asset in STATIC.iterdir():
            served = anonymous.get(f"/dashboard/{asset.name}")
            assert served.status_code == 200, asset.name
            assert not re.search(r"https?://|(?:src|href)=\"//", served.text.replace(
                "http://www.w3.org/2000/svg", "")), asset.name
        assert "/v1/fleet/history" in anonymous.get("/dashboard/fleet.js").text
        assert anonymous.get("/openapi.json").json()["info"]["title"] == "gpufleet"
    with world.client("b-read") as http:
        fleet = http.get("/v1/fleet").json()
    assert set(fleet) == {"workers", "models"}
