"""An EC2 Auto Scaling group: spot first, an on-demand base, drained before termination.

The group (``create_group``, or your own infrastructure code) has:

- a mixed-instances policy: several GPU instance types from one launch
  template, ``OnDemandPercentageAboveBaseCapacity`` 0 and
  ``price-capacity-optimized`` spot allocation. The on-demand base is the
  number of on-demand workers the controller wants: ``launch(n, on-demand)``
  raises it by n, ``launch(n, spot)`` only the desired capacity, so every
  worker above the base is spot, and the controller falls back to on-demand
  when spot capacity is refused (failed launch activities) or reclaimed;
- a lifecycle hook on ``autoscaling:EC2_INSTANCE_TERMINATING``: a terminating
  instance waits (Terminating:Wait) while its worker, which sees
  ``autoscaling/target-lifecycle-state`` turn ``Terminated`` in the instance
  metadata, drains and then completes the lifecycle action;
- new instances protected from scale-in: only the controller chooses which
  instance goes (``drain``: TerminateInstanceInAutoScalingGroup, decrementing
  the desired capacity), and ``protect`` keeps busy instances protected
  against anything else that lowers the desired capacity.

The launch template's user data starts ``gpufleet worker`` with the fleet's
settings, including GPUFLEET_IMDS_URL, GPUFLEET_AWS_ASG and
GPUFLEET_AWS_LIFECYCLE_HOOK (see README, "The fleet").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from gpufleet import aws
from gpufleet.autoscale.providers.base import Machine
from gpufleet.config import Settings
from gpufleet.domain import Capacity
from gpufleet.errors import ConfigError, Unavailable

log = logging.getLogger(__name__)
HOOK = "gpufleet-drain"
SPOT_REFUSED_WINDOW_S = 600.0
_SPOT_TROUBLE = ("spot", "InsufficientInstanceCapacity", "capacity-not-available",
                 "MaxSpotInstanceCountExceeded")
_GONE = ("Terminated", "Detached", "Detaching")


def _call(what: str, fn: Any, **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in ("ValidationError", "AccessDenied", "UnauthorizedOperation"):
            raise ConfigError(f"Auto Scaling: {what}: {error.get('Message', exc)}") from exc
        raise Unavailable(f"Auto Scaling: {what}: {error.get('Message', exc)}") from exc
    except BotoCoreError as exc:
        raise Unavailable(f"Auto Scaling: {what}: {exc}") from exc


def create_group(name: str, *, launch_template: str, instance_types: Sequence[str],
                 subnets: Sequence[str], max_size: int, hook_timeout_s: int = 300,
                 client: Any = None) -> None:
    """Create the Auto Scaling group the aws provider drives, with its lifecycle hook."""
    client = client or aws.client("autoscaling")
    _call("create the group", client.create_auto_scaling_group,
          AutoScalingGroupName=name, MinSize=0, MaxSize=max_size, DesiredCapacity=0,
          VPCZoneIdentifier=",".join(subnets), NewInstancesProtectedFromScaleIn=True,
          MixedInstancesPolicy=_mixed_policy(launch_template, instance_types, 0))
    _call("put the lifecycle hook", client.put_lifecycle_hook,
          LifecycleHookName=HOOK, AutoScalingGroupName=name,
          LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
          HeartbeatTimeout=hook_timeout_s, DefaultResult="CONTINUE")


def _mixed_policy(template: str, instance_types: Sequence[str], on_demand: int
                  ) -> dict[str, Any]:
    return {"LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateName": template,
                                                "Version": "$Latest"},
                "Overrides": [{"InstanceType": t} for t in instance_types]},
            "InstancesDistribution": _distribution(on_demand)}


def _distribution(on_demand: int) -> dict[str, Any]:
    return {"OnDemandBaseCapacity": on_demand, "OnDemandPercentageAboveBaseCapacity": 0,
            "SpotAllocationStrategy": "price-capacity-optimized"}


def spot_refused_in(activities: Sequence[dict[str, Any]], *, now: float,
                    window_s: float = SPOT_REFUSED_WINDOW_S) -> bool:
    """Did a launch fail for want of spot capacity within the window?"""
    for activity in activities:
        started: Any = activity.get("StartTime")
        at = started.timestamp() if hasattr(started, "timestamp") else 0.0
        text = f"{activity.get('StatusMessage', '')} {activity.get('Description', '')}"
        if activity.get("StatusCode") in ("Failed", "Cancelled") and now - at <= window_s \
                and any(word.lower() in text.lower() for word in _SPOT_TROUBLE):
            return True
    return False


class AwsProvider:
    name = "aws"
    launch_overhead_s = 90.0  # instance start and boot, before the worker process runs

    def __init__(self, settings: Settings, *, model: str, group: str | None = None,
                 autoscaling: Any = None, ec2: Any = None) -> None:
        self.group = group or settings.fleet.aws_asg
        if not self.group:
            raise ConfigError("--provider aws needs the Auto Scaling group: GPUFLEET_AWS_ASG")
        self.model = model
        self.autoscaling = autoscaling or aws.client("autoscaling")
        self.ec2 = ec2 or aws.client("ec2")

    def _describe(self) -> dict[str, Any]:
        groups = _call("describe the group", self.autoscaling.describe_auto_scaling_groups,
                       AutoScalingGroupNames=[self.group])["AutoScalingGroups"]
        if not groups:
            raise ConfigError(f"no Auto Scaling group {self.group!r}")
        return dict(groups[0])

    def machines(self) -> list[Machine]:
        group = self._describe()
        instances = [i for i in group["Instances"] if i["LifecycleState"] not in _GONE]
        details: dict[str, dict[str, Any]] = {}
        if instances:
            reply = _call("describe instances", self.ec2.describe_instances,
                          InstanceIds=[i["InstanceId"] for i in instances])
            details = {i["InstanceId"]: i for r in reply["Reservations"] for i in r["Instances"]}
        now = time.time()
        found = []
        for i in instances:
            info = details.get(i["InstanceId"], {})
            launched = info.get("LaunchTime")
            found.append(Machine(
                id=i["InstanceId"],
                capacity=Capacity.SPOT if info.get("InstanceLifecycle") == "spot"
                else Capacity.ON_DEMAND,
                launched_at=launched.timestamp() if launched is not None else now,
                draining=i["LifecycleState"].startswith("Terminating"),
                pending=i["LifecycleState"].startswith("Pending")))
        # Desired but not created yet: they count, or the next tick would launch them again.
        live = sum(1 for m in found if not m.draining)
        found += [Machine(id=f"pending-{n}", capacity=Capacity.SPOT, launched_at=now,
                          pending=True)
                  for n in range(max(0, group["DesiredCapacity"] - live))]
        return found

    def _resize(self, group: dict[str, Any], desired: int, on_demand: int) -> None:
        kwargs: dict[str, Any] = {"AutoScalingGroupName": self.group,
                                  "DesiredCapacity": max(0, desired),
                                  "MaxSize": max(group["MaxSize"], desired)}
        policy = group.get("MixedInstancesPolicy")
        if policy:
            # Described with both the template's id and name; a request may name it only once.
            template = dict(policy["LaunchTemplate"]["LaunchTemplateSpecification"])
            if template.get("LaunchTemplateId"):
                template.pop("LaunchTemplateName", None)
            kwargs["MixedInstancesPolicy"] = {
                **policy,
                "LaunchTemplate": {**policy["LaunchTemplate"],
                                   "LaunchTemplateSpecification": template},
                "InstancesDistribution": {**policy.get("InstancesDistribution", {}),
                                          **_distribution(max(0, on_demand))}}
        _call("resize the group", self.autoscaling.update_auto_scaling_group, **kwargs)

    def launch(self, count: int, capacity: Capacity) -> list[str]:
        if count <= 0:
            return []
        group = self._describe()
        base = group.get("MixedInstancesPolicy", {}).get("InstancesDistribution", {}).get(
            "OnDemandBaseCapacity", 0)
        extra = count if capacity is Capacity.ON_DEMAND else 0
        self._resize(group, group["DesiredCapacity"] + count, base + extra)
        return []

    def drain(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        machines = {m.id: m for m in self.machines()}
        placeholders = [i for i in ids if i.startswith("pending-")]
        on_demand = 0
        for instance in ids:
            machine = machines.get(instance)
            if machine is None or instance in placeholders or machine.draining:
                continue
            # The lifecycle hook holds the instance until its worker has drained.
            _call(f"terminate {instance}",
                  self.autoscaling.terminate_instance_in_auto_scaling_group,
                  InstanceId=instance, ShouldDecrementDesiredCapacity=True)
            on_demand += machine.capacity is Capacity.ON_DEMAND
        if placeholders or on_demand:
            group = self._describe()
            base = group.get("MixedInstancesPolicy", {}).get("InstancesDistribution", {}).get(
                "OnDemandBaseCapacity", 0)
            self._resize(group, group["DesiredCapacity"] - len(placeholders), base - on_demand)

    def protect(self, busy: Sequence[str]) -> None:
        wanted = set(busy)
        group = self._describe()
        change: dict[bool, list[str]] = {True: [], False: []}
        for i in group["Instances"]:
            if i["LifecycleState"] != "InService":
                continue
            protect = i["InstanceId"] in wanted
            if bool(i.get("ProtectedFromScaleIn")) != protect:
                change[protect].append(i["InstanceId"])
        for protect, ids in change.items():
            for start in range(0, len(ids), 50):  # the API takes 50 at a time
                _call("set scale-in protection", self.autoscaling.set_instance_protection,
                      AutoScalingGroupName=self.group, InstanceIds=ids[start:start + 50],
                      ProtectedFromScaleIn=protect)

    def spot_refused(self) -> bool:
        reply = _call("describe scaling activities",
                      self.autoscaling.describe_scaling_activities,
                      AutoScalingGroupName=self.group, MaxRecords=20)
        return spot_refused_in(reply.get("Activities", []), now=time.time())
