"""Kubernetes: one worker pod per machine, created, drained and protected by the controller.

Why pods the controller creates and owns rather than a Deployment it scales:
a Deployment's scale-in lets the ReplicaSet pick which pods go (the deletion
cost only ranks them), and every other provider's model is "this machine
goes, now". With its own pods the controller deletes exactly the worker the
policy chose (idle first, then the one with least work in flight), measures
each pod's bootstrap from its creation, and asks for spot or on-demand per
pod, as the AWS provider does per instance.

- ``machines()``: the pool's pods (``gpufleet.io/pool``), whoever created them;
  a pod being deleted is draining, one not yet running is pending, one that
  finished (its worker exited, or its node went) is dropped and cleaned up.
  The capacity is the node's (Karpenter or EKS label) once it is scheduled:
  a spot-preferring pod may have fallen back to on-demand.
- ``launch``: creates pods (see ``k8s_pods``).
- ``drain``: a graceful DELETE; the worker gets SIGTERM and a grace period
  longer than GPUFLEET_DRAIN_GRACE_S, drains, hands back its leases, exits.
- ``protect``: busy pods get ``karpenter.sh/do-not-disrupt``,
  ``cluster-autoscaler.kubernetes.io/safe-to-evict: "false"`` and a
  ``pod-deletion-cost``; the rest lose them.
- ``spot_refused``: a spot pod's node was reclaimed in the last 10 minutes
  (a ``DisruptionTarget`` condition, a node that is gone), so the policy
  starts on-demand for a while, as after an EC2 spot notice.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

from gpufleet.autoscale.providers import k8s_pods as pods
from gpufleet.autoscale.providers.base import Machine, pool_name
from gpufleet.autoscale.providers.k8s_api import Api, connect, default_namespace
from gpufleet.config import Settings
from gpufleet.domain import Capacity
from gpufleet.errors import ConfigError

log = logging.getLogger(__name__)
SPOT_REFUSED_WINDOW_S = 600.0  # as on AWS


class KubernetesProvider:
    name = "kubernetes"
    launch_overhead_s = 60.0  # scheduling, a node if one must be added, the image pull

    def __init__(self, settings: Settings, *, model: str, api_client: Any = None,
                 namespace: str | None = None) -> None:
        fleet = settings.fleet
        if not fleet.k8s_image:
            raise ConfigError("--provider kubernetes needs the worker image: "
                              "GPUFLEET_K8S_IMAGE (e.g. registry.example.com/gpufleet:0.1.0)")
        self.settings, self.model = settings, model
        # Label values: at most 63 characters, alphanumeric at both ends.
        self.pool = pool_name(model).strip("-")[-63:].strip("-")
        self.api = Api(api_client if api_client is not None else connect(),
                       namespace or fleet.k8s_namespace or default_namespace())
        self._reclaimed_at = 0.0  # the last spot reclaim seen, for pods since deleted

    def _pods(self) -> list[dict[str, Any]]:
        return self.api.list_pods(pods.selector(self.pool))

    def machines(self) -> list[Machine]:
        found, nodes = [], _Nodes(self.api)
        for pod in self._pods():
            name = pod["metadata"]["name"]
            node_name = pod.get("spec", {}).get("nodeName")
            capacity = pods.asked_capacity(pod)
            node = nodes.get(node_name) if node_name else None
            node_gone = bool(node_name) and node is None
            reclaimed = pods.reclaimed_at(pod) or (time.time() if node_gone else None)
            if reclaimed is not None and capacity is Capacity.SPOT:
                self._note_reclaim(name, reclaimed)
            if pods.finished(pod) or node_gone:
                self._clean_up(pod)
                continue
            if node is not None:
                capacity = pods.node_capacity(node) or capacity
            found.append(Machine(
                id=name, capacity=capacity, launched_at=pods.created_at(pod),
                draining=bool(pod["metadata"].get("deletionTimestamp")) or reclaimed is not None,
                pending=pod.get("status", {}).get("phase", "Pending") == "Pending"))
        return found

    def _note_reclaim(self, name: str, at: float) -> None:
        if at > self._reclaimed_at:
            log.warning("pod %s: its spot node was reclaimed; on-demand for a while", name)
            self._reclaimed_at = at

    def _clean_up(self, pod: dict[str, Any]) -> None:
        """A finished pod holds no worker: delete it so the next tick does not see it."""
        if not pod["metadata"].get("deletionTimestamp"):
            self.api.delete_pod(pod["metadata"]["name"], grace_s=0)

    def launch(self, count: int, capacity: Capacity) -> list[str]:
        fleet = self.settings.fleet
        names = []
        for _ in range(max(0, count)):
            name = f"gpufleet-{self.pool.lower()[:40].strip('-')}-{secrets.token_hex(4)}"
            self.api.create_pod(pods.worker_pod(
                name, pool=self.pool, model=self.model, capacity=capacity,
                image=fleet.k8s_image, gpus=fleet.k8s_gpus,
                drain_grace_s=self.settings.worker.drain_grace_s,
                settings_name=fleet.k8s_settings, service_account=fleet.k8s_service_account))
            names.append(name)
        return names

    def drain(self, ids: Sequence[str]) -> None:
        grace_s = pods.grace_period_s(self.settings.worker.drain_grace_s)
        for name in ids:
            self.api.delete_pod(name, grace_s=grace_s)

    def protect(self, busy: Sequence[str]) -> None:
        wanted = set(busy)
        for pod in self._pods():
            if pod["metadata"].get("deletionTimestamp") or pods.finished(pod):
                continue
            name = pod["metadata"]["name"]
            annotations = pod["metadata"].get("annotations") or {}
            protected = all(annotations.get(k) == v for k, v in pods.PROTECT.items())
            if name in wanted and not protected:
                self.api.annotate_pod(name, dict(pods.PROTECT))
            elif name not in wanted and any(k in annotations for k in pods.PROTECT):
                self.api.annotate_pod(name, dict.fromkeys(pods.PROTECT))

    def spot_refused(self) -> bool:
        now = time.time()
        for pod in self._pods():
            at = pods.reclaimed_at(pod)
            if at is not None and pods.asked_capacity(pod) is Capacity.SPOT:
                self._reclaimed_at = max(self._reclaimed_at, at)
        return now - self._reclaimed_at <= SPOT_REFUSED_WINDOW_S


class _Nodes:
    """Nodes read once per look: many pods share one."""

    def __init__(self, api: Api) -> None:
        self.api, self.seen = api, dict[str, Any]()

    def get(self, name: str) -> dict[str, Any] | None:
        if name not in self.seen:
            self.seen[name] = self.api.node(name)
        node: dict[str, Any] | None = self.seen[name]
        return node
