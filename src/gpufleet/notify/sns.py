"""SNS delivery: the event published to a topic, with message attributes (tenant, model,
state, event) that subscriptions' filter policies route on (an SQS queue per tenant, say)."""

from __future__ import annotations

import json
from typing import Any

from gpufleet import aws
from gpufleet.notify.events import attributes
from gpufleet.notify.webhook import Outcome

# Errors that another attempt will not mend.
_FINAL = frozenset({"NotFound", "InvalidParameter", "InvalidParameterValue", "AuthorizationError",
                    "InvalidClientTokenId", "KMSDisabled", "EndpointDisabled"})


def region_of(arn: str) -> str:
    return arn.split(":")[3]


def publish_client(arn: str, clients: dict[str, Any]) -> str:
    """Make the client for the topic's region unless clients has it; the region."""
    region = region_of(arn)
    if region not in clients:
        # boto3 retries throttling and 5xx itself, briefly: the outbox retries for longer.
        clients[region] = aws.client("sns", region=region, attempts=2)
    return region


def publish(arn: str, *, body: str, clients: dict[str, Any]) -> Outcome:
    """One attempt to publish body to the topic; clients: one boto3 SNS client per region,
    kept by the caller between attempts."""
    from botocore.exceptions import BotoCoreError, ClientError

    region = publish_client(arn, clients)
    doc = json.loads(body)
    try:
        clients[region].publish(
            TopicArn=arn, Message=body, Subject=f"gpufleet {doc.get('event', 'event')}",
            MessageAttributes={name: {"DataType": "String", "StringValue": value or "-"}
                               for name, value in attributes(doc).items()})
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        return Outcome(ok=False, retry=code not in _FINAL, error=f"SNS {code}: {exc}"[:500])
    except BotoCoreError as exc:
        return Outcome(ok=False, retry=True, error=f"SNS: {exc}"[:500])
    return Outcome(ok=True, retry=False)
