"""Names: the logical ids resources know each other by, and the physical names the stack gives.

Physical names are derived from one prefix (``--name``, default ``gpufleet``) rather than
left to CloudFormation, for two reasons: the manifest bucket's notification invokes the
trigger whose role reads that bucket, and naming the bucket by a rule (not by ``Ref``)
is what breaks that circle; and IAM policies can then be scoped to
``<prefix>-tasks*``, the family of queues gpufleet creates per model at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from troposphere import Sub

from gpufleet.errors import ConfigError
from gpufleet.models.base import canonical_spec
from gpufleet.queue.sqs_setup import DLQ_SUFFIX, queue_name

# Bucket names carry the account and region (up to 12 + 14 characters) and a role word,
# so the prefix is kept short enough that every name stays within S3's 63.
_PREFIX = re.compile(r"[a-z][a-z0-9-]{1,18}[a-z0-9]")

# Logical ids, one place.
KEY = "EncryptionKey"
INPUT_BUCKET, RESULTS_BUCKET, MANIFEST_BUCKET = "InputBucket", "ResultsBucket", "ManifestBucket"
TASKS_QUEUE, TASKS_DLQ = "TasksQueue", "TasksDeadLetterQueue"
MODEL_QUEUE, MODEL_DLQ = "ModelQueue", "ModelDeadLetterQueue"
WORKER_ROLE, TRIGGER_ROLE, API_ROLE, API_EXECUTION_ROLE = (
    "WorkerRole", "TriggerRole", "ApiTaskRole", "ApiExecutionRole")
WORKER_GROUP, LAUNCH_TEMPLATE = "WorkerGroup", "WorkerLaunchTemplate"
TRIGGER_FUNCTION, TICK_RULE = "TriggerFunction", "ControllerTickRule"
DB_SECRET, DATABASE, CACHE = "DatabaseSecret", "Database", "Cache"
WORKER_SG, TRIGGER_SG, API_SG, ALB_SG, DB_SG, CACHE_SG, ENDPOINT_SG = (
    "WorkerSecurityGroup", "TriggerSecurityGroup", "ApiSecurityGroup",
    "LoadBalancerSecurityGroup", "DatabaseSecurityGroup", "CacheSecurityGroup",
    "EndpointSecurityGroup")
ALARM_TOPIC = "AlarmTopic"
WORKER_LOGS, API_LOGS, TRIGGER_LOGS = "WorkerLogGroup", "ApiLogGroup", "TriggerLogGroup"
LIFECYCLE_HOOK = "gpufleet-drain"  # the name the worker completes (providers.aws.HOOK)


@dataclass(frozen=True)
class Names:
    """Physical names of one deployment: its prefix and the model its fleet runs."""

    prefix: str = "gpufleet"
    model: str = "efficientnet-lite0"

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise ConfigError(f"--name {self.prefix!r}: 3 to 20 of a-z 0-9 -, starting with a "
                              "letter (it begins bucket, queue and role names)")
        object.__setattr__(self, "model", canonical_spec(self.model))

    def bucket(self, role: str) -> Sub:
        return Sub(f"{self.prefix}-{role}-${{AWS::AccountId}}-${{AWS::Region}}")

    def bucket_arn(self, role: str, objects: bool = False) -> Sub:
        tail = "/*" if objects else ""
        return Sub(f"arn:${{AWS::Partition}}:s3:::{self.prefix}-{role}-${{AWS::AccountId}}-"
                   f"${{AWS::Region}}{tail}")

    @property
    def tasks(self) -> str:
        """The queue family's base queue (GPUFLEET_QUEUE=sqs://<this>)."""
        return f"{self.prefix}-tasks"

    @property
    def model_queue(self) -> str:
        """The model's own queue, as gpufleet names it (``queue.sqs_setup.queue_name``)."""
        return queue_name(self.tasks, self.model)

    @property
    def model_dlq(self) -> str:
        return self.model_queue + DLQ_SUFFIX

    def queue_family_arn(self) -> Sub:
        """Every queue of the family: the base pair and each model's pair, made at run time."""
        return Sub(f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:"
                   f"{self.tasks}*")

    @property
    def group(self) -> str:
        return f"{self.prefix}-workers"

    def group_arn(self) -> Sub:
        return Sub(f"arn:${{AWS::Partition}}:autoscaling:${{AWS::Region}}:${{AWS::AccountId}}:"
                   f"autoScalingGroup:*:autoScalingGroupName/{self.group}")

    @property
    def function(self) -> str:
        return f"{self.prefix}-trigger"

    @property
    def rule(self) -> str:
        return f"{self.prefix}-controller-tick"

    def rule_arn(self) -> Sub:
        return Sub(f"arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:"
                   f"rule/{self.rule}")

    def log_group(self, role: str) -> str:
        return f"/aws/lambda/{self.function}" if role == "trigger" else \
            f"/gpufleet/{self.prefix}/{role}"
