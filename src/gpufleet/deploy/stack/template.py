"""The whole stack: each concern's module adds its resources; ``build`` returns the YAML."""

from __future__ import annotations

import json
from collections.abc import Mapping

from troposphere import If, Output, Ref, Sub, Template

from gpufleet.deploy.stack.alarms import add_alarms, add_logs
from gpufleet.deploy.stack.api import add_api
from gpufleet.deploy.stack.datastores import add_datastores
from gpufleet.deploy.stack.firewall import add_security_groups
from gpufleet.deploy.stack.iam import add_roles
from gpufleet.deploy.stack.names import ALARM_TOPIC, MODEL_QUEUE, Names
from gpufleet.deploy.stack.network import add_network
from gpufleet.deploy.stack.parameters import add_parameters
from gpufleet.deploy.stack.queue import add_queues
from gpufleet.deploy.stack.storage import add_storage
from gpufleet.deploy.stack.trigger import add_trigger
from gpufleet.deploy.stack.workers import add_workers


def build(names: Names, *, defaults: Mapping[str, str] | None = None) -> Template:
    t = Template(Description=f"gpufleet: a GPU fleet for {names.model} that scales from zero "
                 "when a manifest lands and back to zero when the work is done")
    add_parameters(t, defaults)
    add_network(t)
    add_security_groups(t)
    add_storage(t, names)
    add_queues(t, names)
    add_datastores(t)
    add_roles(t, names)
    add_logs(t, names)
    add_workers(t, names)
    add_trigger(t, names)
    add_api(t, names)
    add_alarms(t)
    _outputs(t, names)
    return t


def _outputs(t: Template, names: Names) -> None:
    scheme = If("Https", "https", "http")
    for name, value, what in (
        ("InputBucket", Ref("InputBucket"), "where the photos go (GPUFLEET_INPUT)"),
        ("ResultsBucket", Ref("ResultsBucket"), "where results land (GPUFLEET_OUTPUT)"),
        ("ManifestBucket", Ref("ManifestBucket"), "drop a manifest under ManifestPrefix here"),
        ("TaskQueue", f"sqs://{names.tasks}", "GPUFLEET_QUEUE"),
        ("ModelQueueUrl", Ref(MODEL_QUEUE), f"the queue of {names.model}"),
        ("WorkerGroup", names.group, "GPUFLEET_AWS_ASG"),
        ("ApiUrl", Sub("${Scheme}://${ApiLoadBalancer.DNSName}", Scheme=scheme),
         "the API (GPUFLEET_API)"),
        ("AlarmTopic", Ref(ALARM_TOPIC), "subscribe to hear of dead letters and waiting tasks"),
        ("Model", names.model, "the model this stack's fleet runs"),
    ):
        t.add_output(Output(name, Value=value, Description=what))



INLINE_LIMIT_BYTES = 51_200  # what CloudFormation takes as a template body, without S3


def to_json(template: Template) -> str:
    """Compact JSON: the same template, small enough to deploy without an S3 bucket."""
    return json.dumps(template.to_dict(), separators=(",", ":"))


def to_yaml(template: Template) -> str:
    return str(template.to_yaml(clean_up=False, long_form=True))
