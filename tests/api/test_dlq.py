"""Dead letters through the API: the tenant's own, and redrive (admin scope)."""

from __future__ import annotations

from pathlib import Path

from gpufleet.jobs import enqueue_job, new_job_id
from tests.api.conftest import World, run_worker, tenant_input


def test_dead_letters_are_listed_per_tenant_and_redriven(world: World, tmp_path: Path) -> None:
    # Given a job of tenant a whose model fails until healed (an operator's plugin), whose
    # only task a worker dead-letters at its first failure
    heal = tmp_path / "healed"
    model = f"tests.e2e.plugins:FlakyTagger?heal_file={heal}"
    photos = tenant_input(world.home, "a") / "photos"
    index = world.home.index()
    job = enqueue_job(world.home.settings, index, new_job_id(),
                      ["item-00001.bin", "item-00002.bin"], input=photos.as_uri() + "/",
                      output=world.home.settings.output, model=model, tenant="a").id
    index.close()
    run_worker(world.home, model, GPUFLEET_MAX_RECEIVES="1")
    # When a's admin lists dead letters, and b's admin does
    with world.client("a") as http:
        mine = http.get("/v1/dlq").json()["dead_letters"]
        assert http.get(f"/v1/jobs/{job}").json()["failed"] == 2
    with world.client("b") as http:
        theirs = http.get("/v1/dlq").json()["dead_letters"]
    # Then a sees its task with its error, and b does not
    assert [(d["job"], d["items"], d["model"]) for d in mine] == [(job, 2, model)]
    assert "GPU fell off the bus" in mine[0]["error"]
    assert all(d["job"] != job for d in theirs)
    # When a redrives, once the model is healed, and a worker runs
    with world.client("a") as http:
        assert http.post("/v1/dlq/redrive").json() == {"redriven": 1, "left_shared": []}
        # Then the job is running again, its items pending, not failed
        view = http.get(f"/v1/jobs/{job}").json()
        assert (view["pending"], view["failed"], view["state"]) == (2, 0, "running")
    heal.touch()
    run_worker(world.home, model)
    # Then the job's items are done (the cached view was dropped by the redrive)
    with world.client("a") as http:
        view = http.get(f"/v1/jobs/{job}").json()
        assert (view["done"], view["failed"], view["state"]) == (2, 0, "succeeded")
        assert http.get("/v1/dlq").json()["dead_letters"] == []
