"""deploy/kubernetes: every overlay renders (kubectl kustomize) into objects the Kubernetes
schemas accept (kubernetes-validate, strict: unknown fields refused), the KEDA ScaledObject
against the subset of KEDA's CRD schema in tests/data/keda, and the pieces agree with the
code: the controller's RBAC grants what the provider calls, the settings are ones gpufleet
knows, KEDA watches the stream gpufleet's Redis queue writes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gpufleet.autoscale.providers.k8s_pods import worker_pod
from gpufleet.autoscale.providers.kubernetes import KubernetesProvider
from gpufleet.config import Settings
from gpufleet.domain import Capacity
from gpufleet.queue.redis import GROUP, RedisQueue
from tests.kube_api import KubeApi

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "deploy" / "kubernetes" / "overlays"
KEDA_SCHEMA = ROOT / "tests" / "data" / "keda" / "scaledobject-v1alpha1.schema.json"
KUBERNETES = "1.30"  # the oldest Kubernetes these manifests are checked against
_VERBS = {("GET", False): "list", ("POST", False): "create", ("DELETE", True): "delete",
          ("PATCH", True): "patch", ("GET", True): "get"}


def _render(overlay: str) -> list[dict[str, Any]]:
    # No kubeconfig: rendering needs no cluster, and kubectl would otherwise ask one its version.
    result = subprocess.run(["kubectl", "kustomize", str(OVERLAYS / overlay)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "KUBECONFIG": os.devnull})
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _validate(doc: dict[str, Any]) -> None:
    if doc["kind"] == "ScaledObject":
        jsonschema.validate(doc, json.loads(KEDA_SCHEMA.read_text()))
    else:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.mark.parametrize(("overlay", "kinds"), [
    ("cpu", {"Deployment": 2, "Role": 1, "ClusterRole": 1, "PodDisruptionBudget": 1}),
    ("gpu", {"Deployment": 2, "Role": 1, "ClusterRole": 1, "PodDisruptionBudget": 1}),
    ("keda", {"Deployment": 2, "Role": 0, "ClusterRole": 0, "ScaledObject": 1}),
])
def test_every_overlay_renders_to_valid_objects(overlay: str, kinds: dict[str, int]) -> None:
    # When the overlay is rendered
    docs = _render(overlay)
    # Then every object passes its schema, all in the gpufleet namespace
    for doc in docs:
        _validate(doc)
    assert {d["metadata"].get("namespace", "gpufleet") for d in docs} == {"gpufleet"}
    # And it holds what that way of running needs
    counted = {kind: sum(d["kind"] == kind for d in docs) for kind in kinds}
    assert counted == kinds
    assert {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Service"} <= {
        d["kind"] for d in docs}


def test_a_schema_violation_is_caught() -> None:
    # Given a rendered Deployment and ScaledObject with a misspelt field each
    docs = _render("keda")
    deployment = _one(docs, "Deployment", "gpufleet-worker")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 150
    scaled = _one(docs, "ScaledObject", "gpufleet-worker")
    scaled["spec"]["maxReplicas"] = 8
    # Then each check refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment)
    with pytest.raises(jsonschema.ValidationError):
        _validate(scaled)


def test_the_controller_may_do_exactly_what_the_provider_does(kube: KubeApi,
                                                               tmp_path: Path) -> None:
    # Given the rights the gpu overlay grants the controller's service account
    docs = _render("gpu")
    role = _one(docs, "Role", "gpufleet-controller")
    nodes = _one(docs, "ClusterRole", "gpufleet-read-nodes")
    granted = {(r, v) for rule in role["rules"] + nodes["rules"]
               for r in rule["resources"] for v in rule["verbs"]}
    controller = _one(docs, "Deployment", "gpufleet-controller")
    account = controller["spec"]["template"]["spec"]["serviceAccountName"]
    for binding in ("RoleBinding", "ClusterRoleBinding"):
        [subject] = next(d for d in docs if d["kind"] == binding)["subjects"]
        assert (subject["name"], subject["namespace"]) == (account, "gpufleet")
    # When the provider does everything it does: launch, look, protect, unprotect, drain
    settings = Settings.from_env({"GPUFLEET_HOME": str(tmp_path), "GPUFLEET_K8S_IMAGE": "x"})
    provider = KubernetesProvider(settings, model="synthetic")
    busy, idle = provider.launch(2, Capacity.SPOT)
    kube.add_node("spot-1", "spot")
    kube.schedule(busy, "spot-1")
    provider.protect([busy])
    provider.protect([])
    provider.machines()
    provider.drain([idle])
    provider.spot_refused()
    # Then it used every right granted, and no other
    used = set()
    for method, path, _, _ in kube.requests:
        parts = path.strip("/").split("/")  # api/v1/nodes/N, api/v1/namespaces/NS/pods[/P]
        resource = "nodes" if parts[2] == "nodes" else "pods"
        used.add((resource, _VERBS[(method, len(parts) == (4 if resource == "nodes" else 6))]))
    assert used == granted


@pytest.mark.parametrize("gpus", [0, 1])
@pytest.mark.parametrize("capacity", list(Capacity))
def test_the_pod_the_provider_creates_is_a_valid_pod(capacity: Capacity, gpus: int) -> None:
    pod = worker_pod("gpufleet-synthetic-0a1b2c3d", pool="synthetic-0a1b2c3d",
                     model="synthetic?bootstrap_s=5", capacity=capacity, image="gpufleet:0.1.0",
                     gpus=gpus, drain_grace_s=120.0, settings_name="gpufleet-settings",
                     service_account="gpufleet-worker")
    kubernetes_validate.validate(pod, KUBERNETES, strict=True)
    assert ("nvidia.com/gpu" in pod["spec"]["containers"][0]["resources"]["requests"]) == (
        gpus > 0)


@pytest.mark.parametrize(("overlay", "gpus"), [("cpu", "0"), ("gpu", "1")])
def test_the_controller_overlays_run_the_kubernetes_provider_with_known_settings(
        overlay: str, gpus: str) -> None:
    docs = _render(overlay)
    settings = _one(docs, "ConfigMap", "gpufleet-settings")["data"]
    secret = _one(docs, "Secret", "gpufleet-settings")["stringData"]
    [container] = _one(docs, "Deployment", "gpufleet-controller")[
        "spec"]["template"]["spec"]["containers"]
    # The controller drives pods; workers get the overlay's GPUs, and the controller's own
    # image on a CPU cluster, its CUDA sibling (deploy/docker/Dockerfile.cuda) on GPUs
    assert container["command"][:4] == ["gpufleet", "controller", "--provider", "kubernetes"]
    assert settings["GPUFLEET_K8S_GPUS"] == gpus
    repository, tag = container["image"].rsplit(":", 1)
    assert tag == "cpu" and settings["GPUFLEET_K8S_IMAGE"] == (
        container["image"] if gpus == "0" else f"{repository}:cuda")
    # And every setting is one gpufleet knows (an unknown GPUFLEET_* name is refused)
    Settings.from_env({**settings, **secret})


def test_the_keda_overlay_scales_the_workers_on_the_stream_gpufleet_writes() -> None:
    docs = _render("keda")
    settings = _one(docs, "ConfigMap", "gpufleet-settings")["data"]
    scaled = _one(docs, "ScaledObject", "gpufleet-worker")["spec"]
    worker = _one(docs, "Deployment", scaled["scaleTargetRef"]["name"])
    [trigger] = scaled["triggers"]
    queue = RedisQueue(settings["GPUFLEET_QUEUE"], name=settings["GPUFLEET_MODEL"])
    # KEDA reads the consumer group's lag on the model's task stream, and may go to zero
    assert trigger["type"] == "redis-streams" and scaled["minReplicaCount"] == 0
    assert (trigger["metadata"]["stream"], trigger["metadata"]["consumerGroup"]) == (
        queue.keys[0], GROUP)
    # And a worker it scales in has longer than its drain grace to finish
    pod = worker["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > float(settings["GPUFLEET_DRAIN_GRACE_S"])
    assert not any(d["kind"] == "Deployment" and d["metadata"]["name"] == "gpufleet-controller"
                   for d in docs)
