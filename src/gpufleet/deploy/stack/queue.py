"""The task queues: the family's base pair and the model's own pair, each with its dead letters.

gpufleet's SQS queues form a family (``queue.sqs_setup``): ``<prefix>-tasks`` and its
``-dlq`` hold the settings, and each model's queue pair is named from the model spec
and would be created on first use with the base's settings. The stack makes the
deployed model's pair itself, so its dead-letter queue exists for the alarms from the
start. Retention is SQS's most (14 days: a long backlog never expires), the redrive
policy moves a task after MaxReceives deliveries, and every queue is encrypted with the
stack's key.
"""

from __future__ import annotations

from typing import Any

from troposphere import GetAtt, Ref, Template, sqs

from gpufleet.deploy.stack.names import MODEL_DLQ, MODEL_QUEUE, TASKS_DLQ, TASKS_QUEUE, Names
from gpufleet.deploy.stack.parts import make
from gpufleet.deploy.stack.storage import key_arn
from gpufleet.queue.sqs_setup import RETENTION_S


def add_queues(t: Template, names: Names) -> None:
    for queue, dlq, name in ((TASKS_QUEUE, TASKS_DLQ, names.tasks),
                             (MODEL_QUEUE, MODEL_DLQ, names.model_queue)):
        common: dict[str, Any] = {"MessageRetentionPeriod": RETENTION_S,
                                  "KmsMasterKeyId": key_arn(),
                                  "KmsDataKeyReusePeriodSeconds": 3600}
        t.add_resource(make(sqs.Queue, dlq, {"QueueName": name + "-dlq", **common}))
        t.add_resource(make(sqs.Queue, queue, {
            "QueueName": name, **common,
            "VisibilityTimeout": Ref("VisibilityTimeoutS"),
            "RedrivePolicy": {"deadLetterTargetArn": GetAtt(dlq, "Arn"),
                              "maxReceiveCount": Ref("MaxReceives")}}))
