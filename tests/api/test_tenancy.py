"""Tenant isolation: tenant a's keys against every one of tenant b's objects get 404."""

from __future__ import annotations

from urllib.parse import urlsplit

from gpufleet.jobs import enqueue_job, new_job_id
from gpufleet.queue import open_queue
from tests.api.conftest import World


def test_another_tenants_job_is_not_found_on_every_endpoint(world: World) -> None:
    b_job = world.jobs["b"]
    key = "item-00001.bin"
    with world.client("a") as http:
        nothing = http.get("/v1/jobs/no-such-job").json()["detail"]
        attempts = {
            "view": http.get(f"/v1/jobs/{b_job}"),
            "cancel": http.delete(f"/v1/jobs/{b_job}"),
            "items": http.get(f"/v1/jobs/{b_job}/items"),
            "filtered items": http.get(f"/v1/jobs/{b_job}/items", params={"status": "done"}),
            "item": http.get(f"/v1/items/{b_job}/{key}"),
            "download": http.get(f"/v1/items/{b_job}/{key}/download"),
            "export": http.get(f"/v1/jobs/{b_job}/export"),
        }
    for name, response in attempts.items():
        # Then each is a 404 that reads like a job that does not exist
        assert response.status_code == 404, (name, response.text)
        assert response.json()["detail"] == nothing.replace("no-such-job", b_job), name
    # And b's job was not cancelled
    with world.client("b") as http:
        assert http.get(f"/v1/jobs/{b_job}").json()["state"] == "partial"


def test_listings_and_search_show_only_the_tenants_own_objects(world: World) -> None:
    with world.client("b") as http:
        b_top = http.get(f"/v1/items/{world.jobs['b']}/item-00002.bin").json()["tags"][0]
    with world.client("a") as http:
        jobs = {j["job"] for j in http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]}
        hits = http.get("/v1/search", params={"tag": b_top["id"], "limit": 1000}).json()
        dead = http.get("/v1/dlq").json()["dead_letters"]
    assert world.jobs["b"] not in jobs and world.jobs["a"] in jobs
    # (a's job has the same objects, so the tag is found there, and only in a's jobs)
    found = {h["job"] for h in hits["items"]}
    assert world.jobs["a"] in found and found <= jobs
    assert all(d["job"] != world.jobs["b"] for d in dead)


def test_a_signed_url_of_another_tenant_is_not_found_with_a_key_and_useless_altered(
        world: World) -> None:
    # Given a signed URL b obtained for its own item
    with world.client("b") as http:
        url = http.get(f"/v1/items/{world.jobs['b']}/item-00003.bin/download"
                       ).headers["location"]
    # When a's key comes with it
    with world.client("a") as http:
        response = http.get(url)
    # Then it is a 404, as for any of b's objects
    assert response.status_code == 404
    # And re-signing it for tenant a is impossible: changing the tenant breaks the signature
    parts = urlsplit(url)
    forged = url.replace("tenant=b", "tenant=a")
    assert forged != url and parts.query
    with world.client() as anonymous:
        assert anonymous.get(forged).status_code == 403
    # While b (or anyone holding the URL, keyless) gets the object
    with world.client("b") as http:
        assert http.get(url).status_code == 200


def test_fleet_and_metrics_show_no_other_tenants_specs_or_counts(world: World) -> None:
    # Given a job of tenant a on a spec of its own, with no worker for it
    spec = "synthetic?item_ms=7"
    job = world.submit("a", {"items": ["photos/item-00001.bin", "photos/item-00002.bin"],
                             "model": spec})
    # When a, b and an anonymous scraper look at the fleet and the metrics
    with world.client("a-read") as http:
        mine = http.get("/v1/fleet").json()
    with world.client("b-read") as http:
        theirs = http.get("/v1/fleet").json()
    with world.client() as anonymous:
        metrics = anonymous.get("/metrics").text
    # Then a sees its model with its counts; b and the scraper do not see the spec
    assert mine["models"][spec] == {"jobs": 1, "pending": 2}
    assert spec not in theirs["models"] and spec not in metrics
    with world.client("a") as http:
        assert http.delete(f"/v1/jobs/{job['job']}").status_code == 200


def test_a_tenants_redrive_leaves_a_queue_shared_with_another_tenant(world: World) -> None:
    # Given dead letters of a and of b on one model's queue
    model = "synthetic?item_ms=9"
    index = world.home.index()
    svc_queue = open_queue(world.home.settings.queue, name=model)
    try:
        for tenant in ("a", "b"):
            job = enqueue_job(world.home.settings, index, new_job_id(), ["x.bin"],
                              input=world.home.settings.input, output=world.home.settings.output,
                              model=model, tenant=tenant)
            index.cancel_job(job.id)
        for lease in svc_queue.receive(10, visibility_timeout_s=30):
            svc_queue.dead_letter(lease, error="boom")
        # When a's admin lists and redrives
        with world.client("a") as http:
            listed = http.get("/v1/dlq").json()["dead_letters"]
            answer = http.post("/v1/dlq/redrive").json()
        # Then a sees only its own letter, and the shared queue is left to an operator
        assert [d["model"] for d in listed if d["model"] == model] == [model]
        assert answer["left_shared"] == [model]
        assert svc_queue.depth().dead == 2
    finally:
        # Settled, so the shared world's other dead-letter tests see none of these
        svc_queue.redrive()
        for lease in svc_queue.receive(10, visibility_timeout_s=30):
            svc_queue.ack(lease)
        svc_queue.close()
        index.close()
