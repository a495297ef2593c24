"""The fleet's small parts: durations, manifest options, the directory inbox, usage and cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpufleet.autoscale.controller import Estimates
from gpufleet.autoscale.providers.base import pool_name
from gpufleet.autoscale.providers.local import LocalProvider
from gpufleet.config import Settings
from gpufleet.domain import Capacity
from gpufleet.durations import parse_duration
from gpufleet.errors import ConfigError, ManifestError
from gpufleet.index import Index
from gpufleet.index.fleet_records import FleetRecords
from gpufleet.intake.directory import DirectoryInbox
from gpufleet.intake.ingest import Ingest
from gpufleet.manifest import parse_manifest
from gpufleet.models.base import canonical_spec
from gpufleet.queue import open_queue
from gpufleet.worker.fleet_member import UsageMeter, complete_lifecycle_action, identify
from gpufleet.worker.notice import NoticeWatcher
from tests.conftest import write_files
from tests.imds import ImdsServer

MODEL = canonical_spec("synthetic?item_ms=1")


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("90s", 90), ("30m", 1800), ("1.5h", 5400), ("1h30m", 5400), ("2d", 172800),
    ("250ms", 0.25), (" 5 m ", 300)])
def test_durations_read_as_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5x", "m5", "-3m", "inf", "nan"])
def test_bad_durations_are_one_line_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="--deadline"):
        parse_duration(text, what="--deadline")


def test_a_json_manifest_carries_a_deadline_and_a_priority() -> None:
    manifest = parse_manifest(b'{"items": ["a.jpg"], "deadline_s": 1800, "priority": 5}',
                              fmt="json")
    assert (manifest.deadline_s, manifest.priority) == (1800.0, 5)


@pytest.mark.parametrize(("doc", "message"), [
    ({"items": ["a"], "deadline_s": -1}, "deadline_s"),
    ({"items": ["a"], "deadline_s": "30m"}, "deadline_s"),
    ({"items": ["a"], "priority": 1.5}, "priority"),
    ({"items": ["a"], "priority": True}, "priority"),
])
def test_bad_manifest_options_are_refused(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(json.dumps(doc).encode(), fmt="json")


# -- the directory inbox -------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"GPUFLEET_HOME": str(tmp_path / "home")})


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _write_manifest(inbox: Path, name: str, doc: object, *, age_s: float = 10.0) -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_text(json.dumps(doc))
    _age(path, age_s)
    return path


def test_a_manifest_in_the_inbox_becomes_one_job_once(settings: Settings,
                                                      tmp_path: Path) -> None:
    # Given an inbox watched for a model, and photos
    keys = write_files(tmp_path / "photos", 5)
    index = Index(settings.db)
    ingest = Ingest(settings, index, DirectoryInbox(tmp_path / "inbox"), model=MODEL)
    # When a complete manifest with a deadline and a priority lands
    _write_manifest(tmp_path / "inbox", "batch.json", {
        "input": (tmp_path / "photos").as_uri() + "/", "items": keys, "deadline_s": 600,
        "priority": 3})
    made = ingest.poll()
    # Then it became one job with its deadline, priority and tasks
    assert len(made) == 1
    job = index.job(made[0])
    assert (job.counts.total, job.deadline_s, job.priority, job.model) == (5, 600.0, 3, MODEL)
    queue = open_queue(settings.queue, name=MODEL)
    assert queue.depth().queued == 1
    # When the inbox is looked at again, and by a new controller (nothing in memory)
    assert ingest.poll() == []
    fresh = Ingest(settings, index, DirectoryInbox(tmp_path / "inbox"), model=MODEL)
    assert fresh.poll() == []
    # Then there is still one job and one task
    assert len(index.jobs()) == 1 and queue.depth().queued == 1
    queue.close()


def test_a_manifest_still_being_written_is_not_taken(settings: Settings,
                                                     tmp_path: Path) -> None:
    # Given a manifest written a moment ago, and temporary files
    inbox = tmp_path / "inbox"
    ingest = Ingest(settings, Index(settings.db), DirectoryInbox(inbox, settle_s=5),
                    model=MODEL)
    fresh = inbox / "big.txt"
    fresh.write_text("a.bin\nb.bin\n")
    _write_manifest(inbox, ".hidden.txt", "x")
    _write_manifest(inbox, "upload.txt.part", "x")
    # Then nothing is taken yet
    assert ingest.poll() == []
    # When the writer has been done for the settle time
    _age(fresh, 6)
    # Then it is taken
    assert len(ingest.poll()) == 1


def test_a_bad_manifest_is_refused_once_with_its_reason(settings: Settings, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    # Given a manifest with a hostile key
    inbox = tmp_path / "inbox"
    index = Index(settings.db)
    _write_manifest(inbox, "evil.json", {"items": ["ok.jpg", "../../etc/passwd"]})
    _write_manifest(inbox, "notes.docx", "not a manifest")
    # When the inbox is polled, twice, by two controllers
    assert Ingest(settings, index, DirectoryInbox(inbox), model=MODEL).poll() == []
    assert Ingest(settings, index, DirectoryInbox(inbox), model=MODEL).poll() == []
    # Then no job, each refusal recorded once with its reason, and logged as an error
    assert index.jobs() == []
    refused = {r["key"]: r for r in FleetRecords(index).manifests()}
    assert set(refused) == {"evil.json", "notes.docx"}
    assert all(r["state"] == "refused" for r in refused.values())
    assert "'..' segment" in refused["evil.json"]["reason"]
    assert "unknown manifest type" in refused["notes.docx"]["reason"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2
    # When the manifest is fixed (new content: a new version)
    _write_manifest(inbox, "evil.json", {"items": ["ok.jpg"]})
    # Then it makes a job
    assert len(Ingest(settings, index, DirectoryInbox(inbox), model=MODEL).poll()) == 1


# -- usage and cost --------------------------------------------------------------------------


def test_the_usage_meter_splits_time_into_busy_and_idle() -> None:
    # Given a meter on a fake clock
    now = [100.0]
    meter = UsageMeter(clock=lambda: now[0], wall=lambda: now[0])
    # When a worker is ready 2 s, busy 5 s, draining 1 s
    for state, seconds in (("ready", 2), ("busy", 5), ("draining", 1)):
        meter.observe(state)
        now[0] += seconds
    # Then
    columns = meter.columns()
    assert (columns["busy_s"], columns["idle_s"], columns["state_since"]) == (6.0, 2.0, 107.0)


def test_a_jobs_cost_is_its_share_of_each_workers_time(settings: Settings) -> None:
    # Given two jobs, and a spot worker that did 30 items of one and 10 of the other
    from gpufleet.domain import ItemResult, ItemStatus

    index = Index(settings.db)
    for job, n in (("a", 30), ("b", 10)):
        index.create_job(job, model=MODEL, input="file:///in/", output="file:///out/",
                         keys=[f"{job}{i}" for i in range(n)])
        index.record([ItemResult(job=job, key=f"{job}{i}", status=ItemStatus.DONE, worker="w1")
                      for i in range(n)])
    index.worker_seen("w1", host="h", pid=1, model=MODEL, state="ready", bootstrap_s=40.0,
                      extra={"capacity": "spot", "price_per_h": 3.6, "busy_s": 80.0,
                             "idle_s": 40.0, "items": 40})
    # Then job a is charged three quarters of the worker's booting, busy and idle time
    usage = index.job("a").usage
    assert (usage.booting_s, usage.busy_s, usage.idle_s) == (30.0, 60.0, 30.0)
    assert usage.cost == pytest.approx(120 * 3.6 / 3600)
    assert index.job("b").usage.worker_s == pytest.approx(40.0)
    assert index.job("a").summary()["usage"]["cost"] == pytest.approx(0.12)


def test_a_worker_knows_its_capacity_and_price(settings: Settings) -> None:
    spot = identify(Settings.from_env({"GPUFLEET_HOME": str(settings.home),
                                       "GPUFLEET_CAPACITY": "spot",
                                       "GPUFLEET_INSTANCE": "local-1"}).fleet)
    assert (spot.instance, spot.capacity, spot.price_per_h) == ("local-1", "spot", 0.2104)
    assert identify(settings.fleet).capacity == "on-demand"
    with pytest.raises(ConfigError, match="GPUFLEET_CAPACITY"):
        identify(Settings.from_env({"GPUFLEET_CAPACITY": "cheap"}).fleet)


def test_estimates_come_from_the_model_spec_until_measured() -> None:
    assert Estimates.for_model("synthetic?item_ms=10&bootstrap_s=300") == Estimates(
        item_s=0.01, bootstrap_s=300.0)
    assert Estimates.for_model("efficientnet-lite0", bootstrap_s=60) == Estimates(
        item_s=0.01, bootstrap_s=60.0)


# -- the local provider's registry -------------------------------------------------------------


def test_the_local_provider_forgets_a_worker_whose_process_is_gone(settings: Settings) -> None:
    # Given a registry with one live process and one that exited
    registry = settings.home / "fleet" / pool_name(MODEL)
    registry.mkdir(parents=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        for name, proc in (("local-live", live), ("local-dead", dead)):
            (registry / f"{name}.json").write_text(json.dumps({
                "id": name, "pid": proc.pid, "capacity": "spot", "launched_at": time.time()}))
        # When a provider (a new controller) looks
        provider = LocalProvider(settings, model=MODEL, registry=registry)
        machines = provider.machines()
        # Then only the live one is there, and the dead one's record is gone
        assert [(m.id, m.capacity) for m in machines] == [("local-live", Capacity.SPOT)]
        assert not (registry / "local-dead.json").exists()
        # When it is drained: SIGTERM, and it shows as draining until it exits
        provider.drain(["local-live"])
        assert live.wait(timeout=10) != 0
        assert provider.machines() == []
    finally:
        live.kill()
        live.wait()


# -- interruption notices ----------------------------------------------------------------------


def _watcher(settings: Settings, **env: str) -> NoticeWatcher:
    values = {"GPUFLEET_HOME": str(settings.home), **env}
    return NoticeWatcher(Settings.from_env(values).fleet, lambda notice: None, clock=lambda: 1000.0)


def test_a_spot_notice_is_read_from_the_instance_metadata_with_a_token(
        settings: Settings) -> None:
    with ImdsServer({"instance-id": "i-0abc", "instance-life-cycle": "spot"}) as imds:
        # Given a worker on EC2 and no notice yet
        watcher = _watcher(settings, GPUFLEET_IMDS_URL=imds.url)
        assert watcher.check() is None
        # When EC2 schedules the interruption
        imds.documents["spot/instance-action"] = json.dumps(
            {"action": "terminate", "time": "2030-01-01T00:02:00Z"})
        notice = watcher.check()
        # Then the notice carries its time, and every request carried a fresh token
        assert notice is not None and notice.source == "spot" and notice.interruption
        assert notice.deadline == datetime(2030, 1, 1, 0, 2, tzinfo=UTC).timestamp()
        assert all(valid for _, _, valid in imds.requests)
        assert [m for m, _, _ in imds.requests].count("PUT") == 1
        # And the worker knows its instance and capacity from the same service
        who = identify(Settings.from_env({"GPUFLEET_HOME": str(settings.home),
                                          "GPUFLEET_IMDS_URL": imds.url}).fleet)
        assert (who.instance, who.capacity) == ("i-0abc", "spot")


def test_a_scale_in_is_read_from_the_target_lifecycle_state(settings: Settings) -> None:
    with ImdsServer({"autoscaling/target-lifecycle-state": "InService"}) as imds:
        watcher = _watcher(settings, GPUFLEET_IMDS_URL=imds.url)
        assert watcher.check() is None
        imds.documents["autoscaling/target-lifecycle-state"] = "Terminated"
        notice = watcher.check()
        assert notice is not None and notice.source == "scale-in"
        assert not notice.interruption and notice.deadline is None


def test_a_notice_file_is_a_local_interruption(settings: Settings, tmp_path: Path) -> None:
    watcher = _watcher(settings, GPUFLEET_NOTICE_FILE=str(tmp_path / "notice"))
    assert watcher.check() is None
    (tmp_path / "notice").touch()
    notice = watcher.check()
    assert notice is not None and notice.interruption
    assert notice.deadline == 1000.0 + 120  # the two-minute window, from the fake clock


def test_an_unreachable_metadata_service_is_no_notice(settings: Settings) -> None:
    watcher = _watcher(settings, GPUFLEET_IMDS_URL="http://127.0.0.1:9")
    assert watcher.check() is None


def test_completing_the_lifecycle_action_is_a_valid_request_and_never_fatal(
        settings: Settings, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # Given a worker of an Auto Scaling group whose API cannot be reached (nothing listens)
    for name, value in {"AWS_ENDPOINT_URL_AUTO_SCALING": "http://127.0.0.1:9",
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(name, value)
    on_ec2 = Settings.from_env({"GPUFLEET_HOME": str(settings.home),
                                "GPUFLEET_AWS_ASG": "gpufleet-workers",
                                "GPUFLEET_AWS_LIFECYCLE_HOOK": "gpufleet-drain"})
    # When it completes its lifecycle action after draining
    assert complete_lifecycle_action(on_ec2.fleet, "i-0abc") is False
    # Then botocore accepted the request (it failed connecting, not validating), and said so
    assert "Could not connect" in caplog.text and "validation" not in caplog.text
    # And a worker outside a group does nothing
    assert complete_lifecycle_action(settings.fleet, "i-0abc") is False
