"""A worker pod: the manifest the kubernetes provider creates, and what it reads back.

One pod is one machine of the fleet, running one ``gpufleet worker``. The pod
spec carries what the AWS provider gets from its group and launch template:

- ``nvidia.com/gpu`` requested (and limited: extended resources must be equal)
  and the usual GPU taints tolerated (``nvidia.com/gpu``, and the GKE/AKS
  ``sku=gpu`` style), so it lands only on GPU nodes;
- spot as a *preference* (node affinity weight 100 on
  ``karpenter.sh/capacity-type=spot`` or ``eks.amazonaws.com/capacityType=SPOT``):
  where no spot node can be had, the scheduler (and Karpenter, which relaxes
  preferences it cannot meet) places it on on-demand capacity; an on-demand
  pod *requires* an on-demand node, or a node with neither label;
- ``terminationGracePeriodSeconds`` longer than the worker's drain grace, so
  SIGTERM gives the worker time to finish or hand back its leases before the
  kubelet kills it;
- ``restartPolicy: Never``: a worker that exits is gone, and the controller
  replaces it, as with the other providers;
- its own name as ``GPUFLEET_INSTANCE`` (downward API), the id under which the
  worker registers, so the controller joins pod and worker row.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from gpufleet.domain import Capacity

POOL = "gpufleet.io/pool"
CAPACITY = "gpufleet.io/capacity"  # what was asked for; the node says what was got
COMPONENT = "app.kubernetes.io/component"
KARPENTER = "karpenter.sh/capacity-type"
EKS = "eks.amazonaws.com/capacityType"
# Karpenter and the cluster autoscaler leave a node alone while a pod says so; the
# deletion cost orders a ReplicaSet's scale-in, for users who wrap these pods in one.
PROTECT = {"karpenter.sh/do-not-disrupt": "true",
           "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
           "controller.kubernetes.io/pod-deletion-cost": "1000"}
DRAIN_MARGIN_S = 30  # beyond the drain grace: the worker's own exit and the last writes
# What the kubelet, a node shutdown or the node lifecycle controller leave on a pod
# whose node went away under it (Failed pods' status.reason).
_NODE_GONE_REASONS = {"NodeShutdown", "Shutdown", "Terminated", "NodeLost"}
_NODE_VALUES = {Capacity.SPOT: ("spot", "SPOT"), Capacity.ON_DEMAND: ("on-demand", "ON_DEMAND")}


def selector(pool: str) -> str:
    return f"{COMPONENT}=worker,{POOL}={pool}"


def worker_pod(name: str, *, pool: str, model: str, capacity: Capacity, image: str,
               gpus: int, drain_grace_s: float, settings_name: str,
               service_account: str) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "1", "memory": "2Gi"}}
    if gpus:
        resources["requests"]["nvidia.com/gpu"] = str(gpus)
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    env = [{"name": "GPUFLEET_INSTANCE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "GPUFLEET_MODEL", "value": model},
           {"name": "GPUFLEET_CAPACITY", "value": capacity.value},
           {"name": "GPUFLEET_DRAIN_GRACE_S", "value": f"{drain_grace_s:g}"}]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name,
                     "labels": {"app.kubernetes.io/name": "gpufleet", COMPONENT: "worker",
                                POOL: pool, CAPACITY: capacity.value}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": service_account,
            "terminationGracePeriodSeconds": grace_period_s(drain_grace_s),
            "affinity": {"nodeAffinity": _affinity(capacity)},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
                # Spot node pools are often tainted so that only willing pods land there.
                {"key": KARPENTER, "operator": "Equal", "value": "spot",
                 "effect": "NoSchedule"},
                {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal",
                 "value": "spot", "effect": "NoSchedule"}],
            "containers": [{
                # One pipeline per GPU of the pod, as on a multi-GPU instance.
                "name": "worker", "image": image,
                "command": ["gpufleet", "worker", *(["--gpus", "all"] if gpus else [])],
                "env": env,
                "envFrom": [{"configMapRef": {"name": settings_name, "optional": True}},
                            {"secretRef": {"name": settings_name, "optional": True}}],
                "resources": resources}]}}


def grace_period_s(drain_grace_s: float) -> int:
    return math.ceil(drain_grace_s) + DRAIN_MARGIN_S


def _affinity(capacity: Capacity) -> dict[str, Any]:
    karpenter, eks = _NODE_VALUES[capacity]
    if capacity is Capacity.SPOT:
        return {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchExpressions": [
                {"key": KARPENTER, "operator": "In", "values": [karpenter]}]}},
            {"weight": 100, "preference": {"matchExpressions": [
                {"key": EKS, "operator": "In", "values": [eks]}]}}]}
    # Terms are ORed: labelled on-demand by either, or a node that is labelled by neither.
    return {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": KARPENTER, "operator": "In", "values": [karpenter]}]},
        {"matchExpressions": [{"key": EKS, "operator": "In", "values": [eks]}]},
        {"matchExpressions": [{"key": KARPENTER, "operator": "DoesNotExist"},
                              {"key": EKS, "operator": "DoesNotExist"}]}]}}


def node_capacity(node: dict[str, Any]) -> Capacity | None:
    labels = node.get("metadata", {}).get("labels") or {}
    for key in (KARPENTER, EKS):
        value = labels.get(key, "")
        for capacity, names in _NODE_VALUES.items():
            if value in names:
                return capacity
    return None


def asked_capacity(pod: dict[str, Any]) -> Capacity:
    value = (pod["metadata"].get("labels") or {}).get(CAPACITY)
    return Capacity(value) if value in set(Capacity) else Capacity.ON_DEMAND


def created_at(pod: dict[str, Any]) -> float:
    stamp = pod["metadata"].get("creationTimestamp")
    return parse_time(stamp) if stamp else time.time()


def parse_time(stamp: str) -> float:
    """An RFC 3339 time as the API server writes it (``2026-12-05T13:42:09Z``)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def finished(pod: dict[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def reclaimed_at(pod: dict[str, Any]) -> float | None:
    """When the platform took the pod's node away under it, or None.

    The controller's own drain is a plain DELETE, which sets no condition. A
    spot reclaim shows as a ``DisruptionTarget`` condition (eviction by Karpenter
    or the taint manager, a graceful node shutdown, pod garbage collection of a
    deleted node) or, on older clusters, a Failed pod whose reason names the node.
    """
    status = pod.get("status", {})
    for condition in status.get("conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            stamp = condition.get("lastTransitionTime")
            return parse_time(stamp) if stamp else time.time()
    if status.get("phase") == "Failed" and status.get("reason") in _NODE_GONE_REASONS:
        return time.time()
    return None
