"""Hostile requests and files get a 4xx with one line (or, from the CLI, one line and exit
1 or 2), never a 500 or a traceback, and nothing is enqueued. Generated here, not stored."""

from __future__ import annotations

import base64
import json

from tests.api.conftest import MODEL, World, tenant_input


def _deep(depth: int) -> str:
    return "[" * depth + '"x"' + "]" * depth


def test_hostile_bodies_get_a_4xx_and_enqueue_nothing(world: World) -> None:
    digits = "9" * 5_000
    bodies = {
        "nested 100,000 deep": '{"items": ' + _deep(100_000) + "}",
        "priority of 5,000 digits": '{"items": ["a"], "priority": ' + digits + "}",
        "priority of 400 digits": '{"items": ["a"], "priority": ' + "9" * 400 + "}",
        "deadline 1e308": '{"items": ["a"], "deadline_s": 1e308}',
        "deadline 1e400": '{"items": ["a"], "deadline_s": 1e400}',
        "deadline NaN": '{"items": ["a"], "deadline_s": NaN}',
        "deadline of a year": '{"items": ["a"], "deadline_s": 31536000}',
        "priority 5000": '{"items": ["a"], "priority": 5000}',
    }
    with world.client("a") as http:
        before = len(http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"])
        for name, text in bodies.items():
            response = http.post("/v1/jobs", content=text,
                                 headers={"Content-Type": "application/json"})
            assert 400 <= response.status_code < 500, (name, response.status_code)
            assert "\n" not in response.json()["detail"], name
        assert len(http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]) == before


def test_hostile_manifest_objects_are_refused(world: World) -> None:
    # Given manifests of a's, nested deep, and with numbers out of range
    folder = tenant_input(world.home, "a") / "hostile"
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "deep.json": _deep(100_000),
        "deep.jsonl": '"a.jpg"\n' + _deep(50_000) + "\n",
        "digits.json": '{"items": ["a.jpg"], "priority": ' + "9" * 5_000 + "}",
        "far.json": '{"items": ["a.jpg"], "deadline_s": 1e308}',
        "nan.json": '{"items": ["a.jpg"], "deadline_s": NaN}',
    }
    with world.client("a") as http:
        for name, text in files.items():
            (folder / name).write_text(text)
            # When each is submitted by location
            response = http.post("/v1/jobs", json={"manifest": f"hostile/{name}",
                                                   "model": MODEL})
            # Then it is a 422 with one line
            assert response.status_code == 422, (name, response.text)
            assert "\n" not in response.json()["detail"]


def test_a_cursor_holding_deep_json_is_a_4xx(world: World) -> None:
    cursor = base64.urlsafe_b64encode(_deep(1_500).encode()).decode().rstrip("=")
    with world.client("a") as http:
        for path, params in (("/v1/search", {"tag": "x", "cursor": cursor}),
                             ("/v1/jobs", {"cursor": cursor}),
                             (f"/v1/jobs/{world.jobs['a']}/items", {"cursor": cursor})):
            response = http.get(path, params=params)
            assert response.status_code in (400, 422), (path, response.text)


def test_the_cli_prints_one_line_for_a_hostile_manifest(world: World) -> None:
    for name, text in (("deep.json", _deep(100_000)), ("deep.jsonl", _deep(50_000)),
                       ("digits.json", json.dumps({"items": ["a"]})[:-1]
                        + ', "priority": ' + "9" * 5_000 + "}")):
        manifest = world.home.path / name
        manifest.write_text(text)
        result = world.home.run("submit", manifest, "--model", MODEL, check=False)
        assert result.returncode in (1, 2), (name, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = world.home.run("submit", world.home.path / "deep.json", "--priority", "9" * 400,
                            check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
