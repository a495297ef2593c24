"""/v1/notify/targets: a tenant's notification targets, each tenant seeing only its own."""

from __future__ import annotations

from tests.api.conftest import MODEL, World, tenant_input

HOOK = "https://93.184.215.14/hook"  # a public address: registration resolves nothing more
TOPIC = "arn:aws:sns:us-east-1:123456789012:jobs"


def test_a_tenant_creates_lists_and_removes_its_targets(world: World) -> None:
    with world.client("a") as a, world.client("b") as b:
        # Given a webhook and a topic of tenant a
        hook = a.post("/v1/notify/targets", json={"address": HOOK, "events": ["finished"]})
        topic = a.post("/v1/notify/targets", json={"address": TOPIC, "progress_s": 60})
        assert hook.status_code == 201, hook.text
        assert topic.status_code == 201, topic.text
        # Then the webhook's secret is shown once, the topic has none
        assert hook.json()["secret"].startswith("whsec_") and topic.json()["secret"] is None
        assert topic.json()["events"] == ["created", "finished", "progress"]
        ids = {hook.json()["id"], topic.json()["id"]}
        listed = a.get("/v1/notify/targets").json()["targets"]
        assert ids <= {t["id"] for t in listed}
        assert all("secret" not in t and t["tenant"] == "a" for t in listed)
        # And tenant b neither sees nor removes them
        assert not ids & {t["id"] for t in b.get("/v1/notify/targets").json()["targets"]}
        assert b.delete(f"/v1/notify/targets/{hook.json()['id']}").status_code == 404
        # When a removes one, it is gone
        assert a.delete(f"/v1/notify/targets/{hook.json()['id']}").status_code == 200
        assert a.delete(f"/v1/notify/targets/{hook.json()['id']}").status_code == 404
        left = {t["id"] for t in a.get("/v1/notify/targets").json()["targets"]}
        assert topic.json()["id"] in left and hook.json()["id"] not in left
        a.delete(f"/v1/notify/targets/{topic.json()['id']}")


def test_a_job_target_must_be_the_tenants_job(world: World) -> None:
    with world.client("a") as a:
        mine = a.post("/v1/notify/targets", json={"address": TOPIC, "job": world.jobs["a"]})
        theirs = a.post("/v1/notify/targets", json={"address": TOPIC, "job": world.jobs["b"]})
        assert mine.status_code == 201 and mine.json()["job"] == world.jobs["a"]
        assert theirs.status_code == 404
        a.delete(f"/v1/notify/targets/{mine.json()['id']}")


def test_refused_targets_and_scopes(world: World) -> None:
    with world.client("a") as a, world.client("a-read") as reader:
        for address, message in (("https://169.254.169.254/latest", "link-local"),
                                 ("https://localhost/hook", "loopback"),
                                 ("http://93.184.215.14/hook", "http is refused"),
                                 ("arn:aws:sns:nowhere", "not an SNS topic ARN")):
            answer = a.post("/v1/notify/targets", json={"address": address})
            assert answer.status_code == 422 and message in answer.json()["detail"], address
        assert reader.post("/v1/notify/targets", json={"address": TOPIC}).status_code == 403
        assert reader.get("/v1/notify/targets").status_code == 200


def test_submit_notify_through_the_api_registers_the_jobs_target(world: World) -> None:
    # Given a manifest of tenant b's objects
    manifest = world.home.path / "notify.txt"
    manifest.write_text("item-00001.bin\n")
    photos = tenant_input(world.home, "b") / "photos"
    # When it is submitted through the API with a webhook to tell
    result = world.home.run("submit", manifest, "--input", photos.as_uri() + "/", "--model",
                            MODEL, "--notify", HOOK, "--api", world.server.url,
                            GPUFLEET_API_KEY=world.keys["b"])
    job = result.stdout.strip()
    # Then b has a target for that job, and its secret was printed once
    assert "whsec_" in result.stderr
    with world.client("b") as b:
        targets = b.get("/v1/notify/targets").json()["targets"]
        (mine,) = [t for t in targets if t["job"] == job]
        assert mine["address"] == HOOK
        b.delete(f"/v1/notify/targets/{mine['id']}")
