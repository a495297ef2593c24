"""What the kubernetes provider reads from pods and nodes: reclaims, capacity, bad settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpufleet.autoscale.providers import k8s_pods as pods
from gpufleet.autoscale.providers.kubernetes import KubernetesProvider
from gpufleet.config import Settings
from gpufleet.domain import Capacity
from gpufleet.errors import ConfigError
from tests.kube_api import KubeApi


def _pod(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "labels": {pods.CAPACITY: "spot"},
                         "creationTimestamp": "2026-12-05T13:42:09Z"}, "status": status}


def test_a_reclaim_is_told_from_the_controllers_own_drain() -> None:
    evicted = _pod(phase="Running", conditions=[{
        "type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
        "lastTransitionTime": "2026-12-05T13:50:00Z"}])
    shut_down = _pod(phase="Failed", reason="NodeShutdown")
    drained = _pod(phase="Running")
    drained["metadata"]["deletionTimestamp"] = "2026-12-05T13:50:00Z"
    # A DisruptionTarget condition (with its time) or a Failed pod naming its node is a reclaim
    assert pods.reclaimed_at(evicted) == pods.parse_time("2026-12-05T13:50:00Z")
    assert pods.reclaimed_at(shut_down) is not None
    # A plain DELETE, the controller's drain, sets no condition: not a reclaim
    assert pods.reclaimed_at(drained) is None
    assert pods.reclaimed_at(_pod(phase="Failed", reason="Error")) is None


def test_a_nodes_capacity_label_is_read_for_karpenter_and_eks() -> None:
    def node(**labels: str) -> dict[str, Any]:
        return {"metadata": {"labels": labels}}

    assert pods.node_capacity(node(**{pods.KARPENTER: "spot"})) is Capacity.SPOT
    assert pods.node_capacity(node(**{pods.EKS: "ON_DEMAND"})) is Capacity.ON_DEMAND
    assert pods.node_capacity(node()) is None


def test_a_spot_pod_that_fell_back_to_on_demand_is_seen_as_on_demand(
        kube: KubeApi, tmp_path: Path) -> None:
    # Given a spot-preferring pod that the scheduler put on an on-demand node (no spot left)
    settings = Settings.from_env({"GPUFLEET_HOME": str(tmp_path), "GPUFLEET_K8S_IMAGE": "x"})
    provider = KubernetesProvider(settings, model="synthetic")
    [pod] = provider.launch(1, Capacity.SPOT)
    kube.add_node("od-1", "on-demand")
    kube.schedule(pod, "od-1")
    # Then the machine is what the node is, on-demand, and not pending
    [machine] = provider.machines()
    assert (machine.capacity, machine.pending, machine.draining) == (
        Capacity.ON_DEMAND, False, False)
    assert machine.launched_at == pods.created_at(kube.pods[pod])


def test_bad_settings_are_one_clear_line(kube: KubeApi, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    home = str(tmp_path)
    # No image: the provider says which setting to give
    with pytest.raises(ConfigError, match="GPUFLEET_K8S_IMAGE"):
        KubernetesProvider(Settings.from_env({"GPUFLEET_HOME": home}), model="synthetic")
    # A negative GPU count is refused where settings are read
    with pytest.raises(ConfigError, match="GPUFLEET_K8S_GPUS"):
        Settings.from_env({"GPUFLEET_HOME": home, "GPUFLEET_K8S_GPUS": "-1"})
    # No cluster configured at all: said so, with the reason
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="no cluster configured"):
        KubernetesProvider(Settings.from_env({"GPUFLEET_HOME": home,
                                              "GPUFLEET_K8S_IMAGE": "x"}), model="synthetic")
    # A namespace that does not exist: the API server's own words
    provider = KubernetesProvider(Settings.from_env({
        "GPUFLEET_HOME": home, "GPUFLEET_K8S_IMAGE": "x", "GPUFLEET_K8S_NAMESPACE": "nope"}),
        model="synthetic", api_client=_client_for(kube))
    with pytest.raises(ConfigError, match='namespaces "nope" not found'):
        provider.machines()


def _client_for(kube: KubeApi) -> Any:
    import kubernetes

    configuration = kubernetes.client.Configuration()
    configuration.host = kube.url
    return kubernetes.client.ApiClient(configuration)
