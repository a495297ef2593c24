"""The commands, end to end on the embedded default: `submit --wait --notify` and `notify`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from gpufleet.notify.webhook import SIGNATURE_HEADER, verify
from tests.conftest import Home, write_files
from tests.notify.receiver import receiver

LOCAL = {"GPUFLEET_NOTIFY_ALLOW_HTTP": "1", "GPUFLEET_NOTIFY_ALLOW_PRIVATE": "1"}


def _secret(stderr: str) -> str:
    found = re.search(r"whsec_[A-Za-z0-9_-]+", stderr)
    assert found, stderr
    return found.group(0)


def test_submit_wait_notify_delivers_created_and_finished_signed(home: Home,
                                                                  tmp_path: Path) -> None:
    home.env.update(LOCAL)
    write_files(tmp_path / "photos", 5)
    with receiver() as hook:
        # When a folder is submitted with --wait and a webhook
        result = home.run("submit", tmp_path / "photos", "--model", "synthetic?item_ms=1",
                          "--wait", "--notify", hook.url)
        secret = _secret(result.stderr)
        # Then by the time it returns the webhook heard created and finished, signed
        events = [json.loads(r.body) for r in hook.received]
        assert [e["event"] for e in events] == ["job.created", "job.finished"], result.stderr
        assert events[1]["state"] == "succeeded" and events[1]["job"]["done"] == 5
        assert all(verify(secret, r.headers[SIGNATURE_HEADER], r.body, now=time.time())
                   for r in hook.received)
        # And the log shows both attempts, nothing pending, and `notify run` sends nothing
        log = home.json("notify", "log")
        assert [(a["event"], a["ok"], a["status"]) for a in log] == [
            ("job.created", True, 200), ("job.finished", True, 200)]
        assert "0 delivered" in home.run("notify", "run").stdout
        assert len(hook.received) == 2


def test_notify_add_list_run_remove(home: Home, tmp_path: Path) -> None:
    home.env.update(LOCAL, GPUFLEET_NOTIFY_BACKOFF_BASE_S="0.01")
    with receiver(script=[500]) as hook:
        # Given a tenant-wide webhook, added by the CLI, and a job submitted after it
        added = home.run("notify", "add", hook.url, "--events", "created")
        target = added.stdout.strip()
        _secret(added.stderr)
        listed = home.json("notify", "list")
        assert [(t["id"], t["address"], t["events"]) for t in listed] == [
            (target, hook.url, ["created"])]
        assert "whsec_" not in json.dumps(listed)
        write_files(tmp_path / "photos", 2)
        job = home.run("submit", tmp_path / "photos", "--model", "synthetic?item_ms=1"
                       ).stdout.strip()
        # (and a topic for that job alone, which only waits in the outbox here)
        home.run("notify", "add", "arn:aws:sns:us-east-1:123456789012:jobs", "--job", job,
                 "--events", "finished")
        assert [t["job"] for t in home.json("notify", "list")] == [None, job]
        # When `notify run` meets a receiver that fails once, then runs after the retry is due
        first = home.run("notify", "run", "--budget", "0")  # one pass
        time.sleep(0.05)  # the retry's wait (at most 10 ms) has passed
        second = home.run("notify", "run")
        # Then the first run retried it and the second delivered it
        assert "1 to retry" in first.stdout and "1 delivered" in second.stdout
        assert [r.status for r in hook.received] == [500, 200]
        # And a removed target is not listed; a bad one is refused in one line
        home.run("notify", "remove", target)
        assert [t["job"] for t in home.json("notify", "list")] == [job]
        refused = home.run("notify", "add", "https://169.254.169.254/", check=False,
                           GPUFLEET_NOTIFY_ALLOW_PRIVATE="0")
        assert refused.returncode == 1
        assert "a link-local address: refused" in " ".join(refused.stderr.split())
        assert "Traceback" not in refused.stderr


def test_a_refused_notify_target_makes_no_job(home: Home, tmp_path: Path) -> None:
    write_files(tmp_path / "photos", 1)
    # When a job is submitted with a webhook on the metadata service's address
    result = home.run("submit", tmp_path / "photos", "--model", "synthetic?item_ms=1",
                      "--notify", "https://169.254.169.254/latest", check=False)
    # Then it is refused in one line, and no job was made
    assert result.returncode == 1 and "link-local" in result.stderr
    assert "Traceback" not in result.stderr
    assert home.json("status") == []
