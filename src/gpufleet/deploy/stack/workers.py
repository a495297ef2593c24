"""The GPU workers: a launch template and an Auto Scaling group the controller sizes.

The group starts empty and is sized only by the controller (the trigger function), never
by CloudFormation: it has no DesiredCapacity, so a stack update leaves a running fleet
alone. It spans the private subnets of two zones with a mixed-instances policy: several
GPU types, spot first (price-capacity-optimized) above an on-demand base, capacity
rebalancing to replace spot machines at risk before they are reclaimed, and new machines
protected from scale-in, so only the controller picks which machine goes. The lifecycle
hook holds a terminating machine until its worker has drained and completed the action.

A warm pool (stopped machines that already pulled the image) is not allowed with a
mixed-instances policy or spot, so with WarmPoolSize above 0 the group launches the first
instance type on demand from the launch template instead (``providers.aws`` sizes both).
"""

from __future__ import annotations

from typing import Any

from troposphere import GetAtt, If, NoValue, Ref, Sub, Template, autoscaling, ec2, iam

from gpufleet.deploy.stack.names import (
    LAUNCH_TEMPLATE,
    LIFECYCLE_HOOK,
    WORKER_GROUP,
    WORKER_ROLE,
    WORKER_SG,
    Names,
)
from gpufleet.deploy.stack.network import private_subnets
from gpufleet.deploy.stack.parts import make
from gpufleet.deploy.stack.user_data import user_data

HOOK_TIMEOUT_S = 600  # the drain grace (at most 420 s) plus time to hand work back


def _template_ref() -> dict[str, Any]:
    return {"LaunchTemplateId": Ref(LAUNCH_TEMPLATE),
            "Version": GetAtt(LAUNCH_TEMPLATE, "LatestVersionNumber")}


def add_workers(t: Template, names: Names) -> None:
    t.add_resource(make(iam.InstanceProfile, "WorkerInstanceProfile", {
        "Roles": [Ref(WORKER_ROLE)]}))
    t.add_resource(make(ec2.LaunchTemplate, LAUNCH_TEMPLATE, {"LaunchTemplateData": {
        "ImageId": Ref("GpuAmiId"),
        "InstanceType": Ref("InstanceType1"),
        "IamInstanceProfile": {"Arn": GetAtt("WorkerInstanceProfile", "Arn")},
        "SecurityGroupIds": [Ref(WORKER_SG)],
        # IMDSv2 only; two hops, so the worker in its container reaches it for spot and
        # scale-in notices.
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2,
                            "HttpEndpoint": "enabled"},
        "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {
            "VolumeSize": 150, "VolumeType": "gp3", "Encrypted": True,
            "DeleteOnTermination": True}}],
        "UserData": user_data(names),
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [
            {"Key": "Name", "Value": Sub("${AWS::StackName}-worker")}]}],
    }}))
    types = [{"InstanceType": Ref("InstanceType1")}] + [
        If(f"HasType{n}", {"InstanceType": Ref(f"InstanceType{n}")}, NoValue) for n in (2, 3, 4)]
    group = make(autoscaling.AutoScalingGroup, WORKER_GROUP, {
        "AutoScalingGroupName": names.group,
        "MinSize": "0", "MaxSize": Ref("MaxWorkers"),
        "VPCZoneIdentifier": private_subnets(),
        "NewInstancesProtectedFromScaleIn": True,
        "CapacityRebalance": If("SpotFleet", True, False),
        "MixedInstancesPolicy": If("SpotFleet", {
            "LaunchTemplate": {"LaunchTemplateSpecification": _template_ref(),
                               "Overrides": types},
            "InstancesDistribution": {
                "OnDemandBaseCapacity": Ref("OnDemandBase"),
                "OnDemandPercentageAboveBaseCapacity": 0,
                "SpotAllocationStrategy": "price-capacity-optimized"}}, NoValue),
        "LaunchTemplate": If("SpotFleet", NoValue, _template_ref()),
        "LifecycleHookSpecificationList": [{
            "LifecycleHookName": LIFECYCLE_HOOK,
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            "HeartbeatTimeout": HOOK_TIMEOUT_S, "DefaultResult": "CONTINUE"}],
        "Tags": [{"Key": "gpufleet:model", "Value": names.model, "PropagateAtLaunch": True}],
    })
    t.add_resource(group)
    # The pool keeps exactly WarmPoolSize machines prepared, whatever the fleet's size.
    pool = make(autoscaling.WarmPool, "WorkerWarmPool", {
        "AutoScalingGroupName": Ref(WORKER_GROUP), "PoolState": "Stopped",
        "MinSize": Ref("WarmPoolSize"), "MaxGroupPreparedCapacity": Ref("WarmPoolSize"),
        "InstanceReusePolicy": {"ReuseOnScaleIn": False}})
    pool.Condition = "WarmPool"
    t.add_resource(pool)
