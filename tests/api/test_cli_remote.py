"""The CLI through the API (--api / GPUFLEET_API): the same output as on the index."""

from __future__ import annotations

import json

from tests.api.conftest import MODEL, World, tenant_input


def test_status_and_results_print_the_same_through_the_api(world: World) -> None:
    # Given tenant a's processed job, and a CLI pointed at the API with a's key
    job = world.jobs["a"]
    remote = {"GPUFLEET_API": world.server.url, "GPUFLEET_API_KEY": world.keys["a"]}
    with world.client("a") as http:
        label = http.get(f"/v1/items/{job}/item-00001.bin").json()["tags"][0]["label"]
    for args in (("status", job, "--json"), ("results", job, "-f", "jsonl"),
                 ("results", job, "--tag", label), ("results", job)):
        # When each command runs locally and through the API
        local = world.home.run(*args)
        through_api = world.home.run(*args, **remote)
        # Then the output is the same (a live worker's idle time still accrues to the job's
        # usage between the two calls, so usage is compared by its shape; the API shows the
        # tenant its locations relative to its own roots, the operator's CLI absolute)
        if args[0] == "status":
            mine, theirs = json.loads(local.stdout), json.loads(through_api.stdout)
            assert set(mine.pop("usage")) == set(theirs.pop("usage"))
            assert (theirs.pop("input"), theirs.pop("output")) == ("photos/", ".")
            assert mine.pop("input").endswith("/input/a/photos/") and mine.pop("output")
            assert theirs == mine
        else:
            assert through_api.stdout == local.stdout, args
    # And status without a job lists only the key's tenant's jobs
    listed = json.loads(world.home.run("status", "--json", **remote).stdout)
    assert job in [j["job"] for j in listed] and world.jobs["b"] not in [j["job"] for j in listed]


def test_submit_through_the_api_makes_a_job_of_the_keys_tenant(world: World) -> None:
    # Given a manifest file whose objects live in the input location
    manifest = world.home.path / "remote.txt"
    manifest.write_text("item-00001.bin\nitem-00002.bin\n")
    photos = tenant_input(world.home, "b") / "photos"
    # When it is submitted with --api and b's key
    job = json.loads(world.home.run(
        "submit", manifest, "--input", photos.as_uri() + "/", "--model", MODEL, "--json",
        "--api", world.server.url, GPUFLEET_API_KEY=world.keys["b"]).stdout)
    # Then the job belongs to b, and the output has the local shape
    assert set(job) >= {"job", "state", "total", "done", "failed", "pending", "model"}
    assert job["total"] == 2 and job["state"] == "queued"
    with world.client("b") as http:
        assert http.get(f"/v1/jobs/{job['job']}").status_code == 200
    with world.client("a") as http:
        assert http.get(f"/v1/jobs/{job['job']}").status_code == 404


def test_api_errors_are_one_line(world: World) -> None:
    remote = {"GPUFLEET_API": world.server.url, "GPUFLEET_API_KEY": world.keys["a"]}
    missing = world.home.run("status", world.jobs["b"], check=False, **remote)
    assert missing.returncode == 1 and "API 404: no job" in missing.stderr
    nokey = world.home.run("status", check=False, GPUFLEET_API=world.server.url)
    assert nokey.returncode == 1 and "GPUFLEET_API_KEY" in nokey.stderr
    down = world.home.run("status", check=False, GPUFLEET_API="http://127.0.0.1:9",
                          GPUFLEET_API_KEY=world.keys["a"])
    assert down.returncode == 1 and "cannot reach the API" in down.stderr
    assert "Traceback" not in missing.stderr + nokey.stderr + down.stderr


def test_submit_wait_through_the_api_prints_the_final_line(world: World) -> None:
    # Given a worker running for the model
    model = "synthetic?item_ms=3"
    worker = world.home.spawn("worker", "--model", model, "--max-idle", "3")
    manifest = world.home.path / "wait.txt"
    manifest.write_text("item-00004.bin\nitem-00005.bin\nnot-there.bin\n")
    photos = tenant_input(world.home, "a") / "photos"
    # When a job is submitted through the API with --wait
    result = world.home.run("submit", manifest, "--input", photos.as_uri() + "/", "--model",
                            model, "--wait", "--api", world.server.url, check=False,
                            GPUFLEET_API_KEY=world.keys["a"])
    # Then it waits for the job, prints what the local --wait prints, and exits 1: partial
    assert result.returncode == 1, result.stderr
    job, rest = result.stdout.strip().split(" ", 1)
    assert rest == "partial: 2 done, 1 failed of 3"
    assert f"see failures: gpufleet results {job}" in result.stderr
    assert worker.wait(timeout=60) == 0


def test_cancel_through_the_api_cancels_the_keys_tenants_job(world: World) -> None:
    # Given a job of tenant a with no worker for its model
    job = world.submit("a", {"items": ["c1.bin", "c2.bin"], "model": "synthetic?item_ms=7"})
    remote = {"GPUFLEET_API": world.server.url}
    # When b's key tries to cancel it, then it is not found; with a's key it is cancelled
    other = world.home.run("cancel", job["job"], check=False, GPUFLEET_API_KEY=world.keys["b"],
                           **remote)
    assert other.returncode == 1 and "API 404" in other.stderr
    summary = json.loads(world.home.run("cancel", job["job"], "--json",
                                        GPUFLEET_API_KEY=world.keys["a"], **remote).stdout)
    assert (summary["state"], summary["cancelled"], summary["pending"]) == ("cancelled", 2, 0)
