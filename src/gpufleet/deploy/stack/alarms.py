"""What an operator watches: log groups with retention, and alarms on the queue.

Two alarms say work is in trouble: a dead-letter queue that holds anything (a task failed
MaxReceives times: ``gpufleet dlq`` shows why) and a task that has waited longer than
OldestTaskAlarmS (the fleet is not keeping up, or not starting). Both watch the base
queue family and the deployed model's queues, and notify one SNS topic, mailed if an
address is given.
"""

from __future__ import annotations

from typing import Any

from troposphere import GetAtt, Ref, Template, cloudwatch, logs, sns

from gpufleet.deploy.stack.names import (
    ALARM_TOPIC,
    API_LOGS,
    MODEL_DLQ,
    MODEL_QUEUE,
    TASKS_DLQ,
    TASKS_QUEUE,
    TRIGGER_LOGS,
    WORKER_LOGS,
    Names,
)
from gpufleet.deploy.stack.parts import make


def add_logs(t: Template, names: Names) -> None:
    for logical, role in ((WORKER_LOGS, "workers"), (API_LOGS, "api"),
                          (TRIGGER_LOGS, "trigger")):
        t.add_resource(make(logs.LogGroup, logical, {
            "LogGroupName": names.log_group(role), "RetentionInDays": Ref("LogRetentionDays")}))


def add_alarms(t: Template) -> None:
    # Not encrypted with the stack's key: CloudWatch could not publish to it, and an alarm
    # carries no data.
    t.add_resource(make(sns.Topic, ALARM_TOPIC, {"DisplayName": "gpufleet alarms"}))
    mail = make(sns.SubscriptionResource, "AlarmMail", {
        "TopicArn": Ref(ALARM_TOPIC), "Protocol": "email", "Endpoint": Ref("AlarmEmail")})
    mail.Condition = "MailAlarms"
    t.add_resource(mail)
    for dlq in (TASKS_DLQ, MODEL_DLQ):
        t.add_resource(_alarm(f"{dlq}NotEmpty", dlq, "ApproximateNumberOfMessagesVisible",
                              "Maximum", 0, "Tasks were dead-lettered: see gpufleet dlq"))
    for queue in (TASKS_QUEUE, MODEL_QUEUE):
        t.add_resource(_alarm(f"{queue}OldestTask", queue, "ApproximateAgeOfOldestMessage",
                              "Maximum", Ref("OldestTaskAlarmS"),
                              "A task has waited too long: is the fleet starting?"))


def _alarm(name: str, queue: str, metric: str, statistic: str, threshold: Any,
           description: str) -> cloudwatch.Alarm:
    return make(cloudwatch.Alarm, name, {
        "AlarmDescription": description, "Namespace": "AWS/SQS", "MetricName": metric,
        "Dimensions": [{"Name": "QueueName", "Value": GetAtt(queue, "QueueName")}],
        "Statistic": statistic, "Period": 300, "EvaluationPeriods": 1,
        "Threshold": threshold, "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching", "AlarmActions": [Ref(ALARM_TOPIC)],
        "OKActions": [Ref(ALARM_TOPIC)]})
