"""The fleet as the dashboard reads it: workers, and decisions and work over time, each
shown to the tenants whose models they serve and to no one else."""

from __future__ import annotations

from gpufleet.index.fleet_records import FleetRecords
from gpufleet.models.base import canonical_spec
from tests.api.conftest import MODEL, World, run_worker, tenant_input
from tests.conftest import write_files


def test_workers_of_the_tenants_models_are_listed_with_their_rate_and_heartbeat(
        world: World) -> None:
    # Given the world's worker, which served both tenants' jobs on one spec
    with world.client("a-read") as http:
        found = http.get("/v1/workers").json()["workers"]
    # Then a sees it with what it did, how fast, and when it was last heard from
    mine = [w for w in found if w["model"] == canonical_spec(MODEL)]
    assert mine, found
    worker = mine[0]
    assert worker["items"] >= 2 * 31 and worker["items_per_s"] > 0
    assert worker["state"] == "stopped" and worker["live"] is False
    assert worker["last_seen"] >= worker["started_at"] and worker["uptime_s"] >= 0


def test_the_fleet_workers_and_history_of_a_cli_job_are_not_shown_to_another_tenant(
        world: World) -> None:
    # Given a job submitted with the CLI (tenant "default") on a spec of its own, processed
    # by a worker, and a decision of the controller on that spec
    spec = canonical_spec("synthetic?item_ms=4")
    folder = world.home.path / "cli-photos"
    write_files(folder, 3)
    world.home.run("submit", folder, "--model", spec)
    run_worker(world.home, spec)
    index = world.home.index()
    try:
        FleetRecords(index).record_decision(spec, 1, {"reasons": ["start 1: for default"],
                                                      "workers": [], "late": []})
    finally:
        index.close()
    # When tenant a's key (acme, say) looks at every fleet view
    with world.client("a-read") as http:
        seen = [http.get(path).text for path in (
            "/v1/fleet", "/v1/workers", "/v1/fleet/history", "/v1/jobs?limit=50")]
    # Then the spec appears on none of them
    for text in seen:
        assert spec not in text and "for default" not in text


def test_history_shows_the_tenants_decisions_with_other_tenants_jobs_taken_out(
        world: World) -> None:
    # Given a spec both tenants use, a job of each on it, and a decision naming both late
    spec = canonical_spec("synthetic?item_ms=5")
    keys = write_files(tenant_input(world.home, "a") / "hist", 4)
    write_files(tenant_input(world.home, "b") / "hist", 4)
    a_job = world.submit("a", {"items": keys, "model": spec, "input": "hist/"})["job"]
    b_job = world.submit("b", {"items": keys, "model": spec, "input": "hist/"})["job"]
    index = world.home.index()
    try:
        FleetRecords(index).record_decision(spec, 2, {
            "start": ["spot"], "drain": [], "late": [a_job, b_job],
            "reasons": ["start 1: the least that meets every deadline",
                        f"late: {a_job}, {b_job} cannot meet the deadline with 1 worker(s)"],
            "workers": [{"id": "m-1", "state": "busy", "capacity": "spot"}],
            "backlog": 8})
    finally:
        index.close()
    run_worker(world.home, spec)
    # When each tenant reads the history
    with world.client("a-read") as http:
        mine = http.get("/v1/fleet/history", params={"window_s": 600}).json()
        pending = sum(m["pending"] for m in http.get("/v1/fleet").json()["models"].values())
    with world.client("b-read") as http:
        theirs = http.get("/v1/fleet/history", params={"window_s": 600}).json()
    # Then each sees the decision with desired and actual workers and its own late job only
    [a_seen] = [d for d in mine["decisions"] if d["model"] == spec]
    [b_seen] = [d for d in theirs["decisions"] if d["model"] == spec]
    assert (a_seen["desired"], a_seen["actual"], a_seen["by_capacity"]) == (2, 1, {"spot": 1})
    assert a_seen["late"] == [a_job] and b_seen["late"] == [b_job]
    assert a_job in a_seen["reasons"][1] and b_job not in a_seen["reasons"][1]
    assert "another tenant's job" in a_seen["reasons"][1]
    assert a_job not in str(theirs) and b_job not in str(mine)
    # And the model-wide backlog the decision recorded is not shown
    assert "backlog" not in a_seen
    # And the series counts a's own items finished in the window, and what a has pending
    assert sum(p["done"] + p["failed"] for p in mine["series"]) >= len(keys)
    assert mine["series"][-1]["backlog"] == pending
    assert mine["bucket_s"] * len(mine["series"]) >= 600


def test_history_windows_are_bounded(world: World) -> None:
    with world.client("a-read") as http:
        assert http.get("/v1/fleet/history", params={"window_s": 10}).status_code == 422
        assert http.get("/v1/fleet/history",
                        params={"window_s": 30 * 86400}).status_code == 422
        assert http.get("/v1/workers", params={"seen_within_s": 0}).status_code == 422
