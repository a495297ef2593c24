"""The fleet on Kubernetes: the controller drives worker pods through the API server.

No cluster runs here: tests/kube_api.py serves the API calls the provider
makes over HTTP, and the test plays the scheduler, the kubelet (a real
``gpufleet worker`` process per pod, SIGTERM when the pod is deleted) and the
cloud that reclaims a spot node.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gpufleet.autoscale.controller import Controller, Estimates
from gpufleet.autoscale.policy import PolicyConfig
from gpufleet.autoscale.providers.k8s_pods import PROTECT
from gpufleet.autoscale.providers.kubernetes import KubernetesProvider
from gpufleet.config import Settings
from gpufleet.domain import Capacity
from gpufleet.errors import ConfigError, Unavailable
from gpufleet.index import Index
from gpufleet.index.fleet_records import FleetRecords
from gpufleet.jobs import enqueue_job
from gpufleet.models.base import canonical_spec
from gpufleet.queue import open_queue
from tests.conftest import Home, write_files
from tests.kube_api import KubeApi

MODEL = canonical_spec("synthetic?item_ms=10&bootstrap_s=300")
IMAGE = "registry.example.com/gpufleet:0.1.0"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"GPUFLEET_HOME": str(tmp_path / "home"),
                              "GPUFLEET_K8S_IMAGE": IMAGE, "GPUFLEET_DRAIN_GRACE_S": "120"})


def _created(kube: KubeApi) -> list[dict[str, Any]]:
    return [body for method, _, _, body in kube.requests if method == "POST"]


def _controller(settings: Settings, index: Index, **config: Any) -> Controller:
    provider = KubernetesProvider(settings, model=MODEL)
    return Controller(settings, index, provider, model=MODEL,
                      config=PolicyConfig(max_workers=4, cooldown_s=60, **config),
                      estimates=Estimates.for_model(MODEL))


def _job(settings: Settings, index: Index, items: int) -> list[str]:
    keys = [f"p{i:06d}.jpg" for i in range(items)]
    enqueue_job(settings, index, "job-1", keys, input="file:///in/", output="file:///out/",
                model=MODEL, deadline_s=1800)
    return keys


def _report(index: Index, pod: str, state: str, *, since: float) -> None:
    """The worker in the pod says what it is doing, as a real one does every few seconds."""
    index.worker_seen(f"w-{pod}", host=pod, pid=1, model=MODEL, state=state,
                      bootstrap_s=300.0, extra={"instance": pod, "state_since": since})


def _finish_work(settings: Settings, index: Index, keys: list[str]) -> None:
    queue = open_queue(settings.queue, name=MODEL)
    while leases := queue.receive(100, visibility_timeout_s=60):
        for lease in leases:
            queue.ack(lease)
    queue.close()
    index.fail_pending("job-1", keys, error="test: done elsewhere")


def test_a_worker_pod_asks_for_a_gpu_prefers_spot_and_outlives_its_drain_grace(
        kube: KubeApi, settings: Settings) -> None:
    # When the provider starts a spot worker and an on-demand one
    provider = KubernetesProvider(settings, model=MODEL)
    provider.launch(1, Capacity.SPOT)
    provider.launch(1, Capacity.ON_DEMAND)
    spot, on_demand = _created(kube)
    # Then each asks for one GPU, tolerates GPU taints, and runs the worker under its own name
    for pod in (spot, on_demand):
        [container] = pod["spec"]["containers"]
        assert container["image"] == IMAGE
        assert container["command"] == ["gpufleet", "worker", "--gpus", "all"]
        assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
        assert {"GPUFLEET_INSTANCE", "GPUFLEET_MODEL"} <= {e["name"] for e in container["env"]}
        assert "nvidia.com/gpu" in {t["key"] for t in pod["spec"]["tolerations"]}
        # And SIGTERM leaves it longer than the drain grace before the kubelet kills it
        assert pod["spec"]["terminationGracePeriodSeconds"] > 120
        assert pod["spec"]["restartPolicy"] == "Never"
    # And spot is a preference (on-demand nodes remain possible), on-demand a requirement
    spot_affinity = spot["spec"]["affinity"]["nodeAffinity"]
    assert list(spot_affinity) == ["preferredDuringSchedulingIgnoredDuringExecution"]
    assert {e["values"][0] for p in spot_affinity[
        "preferredDuringSchedulingIgnoredDuringExecution"]
        for e in p["preference"]["matchExpressions"]} == {"spot", "SPOT"}
    terms = on_demand["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {v for t in terms for e in t["matchExpressions"] for v in e.get("values", [])} == {
        "on-demand", "ON_DEMAND"}


def test_the_controller_scales_pods_from_zero_to_n_and_back_to_zero(
        kube: KubeApi, settings: Settings) -> None:
    # Given a job of 200 000 items at 10 ms each, due in 30 minutes, and no pod
    index = Index(settings.db)
    keys = _job(settings, index, 200_000)
    ctl = _controller(settings, index)
    # When the controller ticks
    decision = ctl.tick()
    # Then it creates the least fleet that meets the deadline: two spot-preferring pods
    assert decision.desired == 2 and decision.start == (Capacity.SPOT, Capacity.SPOT)
    pods = sorted(kube.pods)
    assert len(pods) == 2
    # When they run, the work is done and their workers have been idle past the cool-down
    kube.add_node("spot-1", "spot")
    for pod in pods:
        kube.schedule(pod, "spot-1")
        _report(index, pod, "ready", since=time.time() - 120)
    _finish_work(settings, index, keys)
    decision = ctl.tick()
    # Then both pods are deleted with a grace period, and the fleet is back to zero
    assert sorted(decision.drain) == pods and decision.desired == 0
    deletes = [(path, body) for method, path, _, body in kube.requests if method == "DELETE"]
    assert sorted(path.rsplit("/", 1)[1] for path, _ in deletes) == pods
    assert all(body["gracePeriodSeconds"] > 120 for _, body in deletes)
    assert ctl.provider.machines() == [] and kube.pods == {}
    index.close()
    ctl.close()


def test_scale_in_drains_the_idle_pod_and_protects_the_busy_one(
        kube: KubeApi, settings: Settings) -> None:
    # Given two running pods: one's worker busy with the last of a job, one idle for 2 min
    index = Index(settings.db)
    _job(settings, index, 64)
    ctl = _controller(settings, index)
    ctl.provider.launch(2, Capacity.SPOT)
    busy, idle = sorted(kube.pods)
    kube.add_node("spot-1", "spot")
    for pod in (busy, idle):
        kube.schedule(pod, "spot-1")
    queue = open_queue(settings.queue, name=MODEL)
    queue.receive(1, visibility_timeout_s=60)
    queue.close()
    _report(index, busy, "busy", since=time.time())
    _report(index, idle, "ready", since=time.time() - 120)
    # When the controller ticks
    decision = ctl.tick()
    # Then the idle pod is the one deleted, and the busy one is shielded from node scale-in
    assert decision.drain == (idle,)
    assert [p for m, p, _, _ in kube.requests if m == "DELETE"] == [
        f"/api/v1/namespaces/gpufleet/pods/{idle}"]
    assert PROTECT.items() <= kube.pods[busy]["metadata"]["annotations"].items()
    index.close()
    ctl.close()


def test_a_reclaimed_spot_node_is_replaced_with_on_demand(
        kube: KubeApi, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    # Given two spot pods running on one spot node, with work for both
    index = Index(settings.db)
    _job(settings, index, 200_000)
    ctl = _controller(settings, index)
    ctl.tick()
    kube.add_node("spot-1", "spot")
    for pod in list(kube.pods):
        kube.schedule(pod, "spot-1")
    assert ctl.provider.spot_refused() is False
    # When the cloud reclaims the node (its pods evicted, then the node gone)
    kube.reclaim("spot-1")
    decision = ctl.tick()
    # Then the pods count as interrupted, spot as refused, and on-demand pods replace them
    assert decision.start == (Capacity.ON_DEMAND, Capacity.ON_DEMAND)
    assert ctl.provider.spot_refused() is True
    assert "spot node was reclaimed" in caplog.text
    replacements = _created(kube)[2:]
    assert [p["metadata"]["labels"]["gpufleet.io/capacity"] for p in replacements] == [
        "on-demand", "on-demand"]
    assert all("requiredDuringSchedulingIgnoredDuringExecution" in
               p["spec"]["affinity"]["nodeAffinity"] for p in replacements)
    index.close()
    ctl.close()


def test_the_controller_keeps_its_decision_while_the_api_server_is_unreachable(
        kube: KubeApi, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    # Given a controller that has sized the fleet to two pods
    index = Index(settings.db)
    _job(settings, index, 200_000)
    ctl = _controller(settings, index)
    assert ctl.tick().desired == 2
    pods = set(kube.pods)
    stop = threading.Event()
    runner = threading.Thread(target=ctl.run, kwargs={"interval_s": 0.05, "stop": stop},
                              daemon=True)
    try:
        # When the API server goes away for a while, under the running controller
        with kube.unreachable():
            runner.start()
            _until(lambda: "tick skipped" in caplog.text, what="a skipped tick")
            # Then the ticks are skipped with one warning each, and the last decision stands
            assert "unreachable" in caplog.text
            assert FleetRecords(index).decisions(MODEL, limit=1)[0]["desired"] == 2
            seen = len(kube.requests)
        # And when it is back, the controller goes on with the same two pods, none added
        _until(lambda: len(kube.requests) > seen + 5, what="ticks after the outage")
    finally:
        stop.set()
        runner.join(timeout=30)
    assert set(kube.pods) == pods
    index.close()
    ctl.close()


def test_an_rbac_refusal_is_one_clear_line(kube: KubeApi, settings: Settings, home: Home,
                                           caplog: pytest.LogCaptureFixture) -> None:
    # Given a service account that may list pods but not create them
    index = Index(settings.db)
    _job(settings, index, 200_000)
    ctl = _controller(settings, index)
    kube.forbidden.add("create")
    # When the controller wants two pods
    with caplog.at_level(logging.ERROR):
        ctl.tick()
    # Then it says, once per refused call and on one line, who may not do what, and where
    refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert refusals and all("\n" not in m for m in refusals)
    assert ('cannot create resource "pods" in API group "" in the namespace "gpufleet"'
            in refusals[0])
    with pytest.raises(ConfigError):
        ctl.provider.launch(1, Capacity.SPOT)
    # And the CLI, refused even the list, prints one error line, not a traceback
    kube.forbidden.add("list")
    result = home.run("controller", "--provider", "kubernetes", "--model", MODEL, "--once",
                      check=False, KUBECONFIG=str(Path(kube.kubeconfig(home.path / "kc"))),
                      GPUFLEET_K8S_IMAGE=IMAGE)
    assert result.returncode != 0
    said = " ".join(result.stderr.split())  # the console wraps at its width
    assert said.count("error:") == 1 and "Traceback" not in said
    assert 'cannot list resource "pods" in API group "" in the namespace "gpufleet"' in said
    index.close()
    ctl.close()


def test_a_busy_pod_drains_with_nothing_lost(kube: KubeApi, home: Home, tmp_path: Path
                                             ) -> None:
    # Given a job and one pod whose worker (a real one: the kubelet's part) is busy with it
    home.env["GPUFLEET_K8S_IMAGE"] = IMAGE
    model = canonical_spec("synthetic?item_ms=20&batch_size=4")
    keys = write_files(tmp_path / "in", 200)
    manifest = tmp_path / "manifest.txt"
    manifest.write_text("\n".join(keys) + "\n")
    job = home.run("submit", manifest, "--input", (tmp_path / "in").as_uri() + "/",
                   "--model", model).stdout.strip()
    provider = KubernetesProvider(home.settings, model=model)
    kube.add_node("spot-1", "spot")
    [first] = provider.launch(1, Capacity.SPOT)
    kube.schedule(first, "spot-1")
    kube.holding.add(first)  # the kubelet keeps the pod until its worker exits
    worker = home.spawn("worker", "--model", model, GPUFLEET_INSTANCE=first)
    home.wait_for(lambda: int(home.json("status", job)["done"]) > 0, what="work to start")
    # When the controller drains it
    provider.drain([first])
    # Then the pod stays, draining, while its worker gets SIGTERM and winds down
    assert [(m.id, m.draining) for m in provider.machines()] == [(first, True)]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    kube.finish(first)
    assert provider.machines() == []
    # And a new pod's worker does the rest: every item ends with exactly one result
    [second] = provider.launch(1, Capacity.SPOT)
    kube.schedule(second, "spot-1")
    home.spawn("worker", "--model", model, "--max-idle", "3",
               GPUFLEET_INSTANCE=second).wait(timeout=120)
    status = home.json("status", job)
    assert (status["done"], status["failed"]) == (200, 0)
    index = home.index()
    try:
        by = [r.worker for r in index.iter_results(job)]
    finally:
        index.close()
    assert len(by) == 200 and len(set(by)) == 2  # the drain came mid-job, and lost nothing


def _until(done: Any, *, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_pod_whose_node_is_gone_is_not_a_machine_and_unavailable_is_retryable(
        kube: KubeApi, settings: Settings) -> None:
    # Given a running on-demand pod
    provider = KubernetesProvider(settings, model=MODEL)
    [pod] = provider.launch(1, Capacity.ON_DEMAND)
    kube.add_node("od-1", "on-demand")
    kube.schedule(pod, "od-1")
    assert [m.capacity for m in provider.machines()] == [Capacity.ON_DEMAND]
    # When its node disappears: it is dropped (and cleaned up), so the controller replaces it
    del kube.nodes["od-1"]
    assert provider.machines() == [] and pod not in kube.pods
    # And an unreachable API server is Unavailable (retried next tick), not a config error
    with kube.unreachable(), pytest.raises(Unavailable):
        provider.machines()
