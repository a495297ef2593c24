"""An S3 inbox: the bucket's event notifications arrive on an SQS queue the controller reads.

``s3://bucket/manifests/`` finds its queue in the bucket's notification
configuration (the queue whose prefix filter covers the inbox's prefix), or
takes it from ``?queue=NAME`` or ``?queue=https://sqs.../NAME``. Each message
holds S3 event records (plain, or wrapped by SNS); every ``ObjectCreated``
record under the prefix is one arrival, identified by its key and its version
id (versioned buckets) or ETag. A message is deleted once each of its records
is accepted or refused; after transient trouble it is left to come back when
its visibility timeout ends. The object is read at that exact version (or only
if its ETag still matches): a manifest overwritten meanwhile has an event of
its own.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

from gpufleet import aws
from gpufleet.errors import ConfigError, ObjectMissing, Unavailable
from gpufleet.intake.inbox import Arrival

log = logging.getLogger(__name__)
_VISIBILITY_S = 120


@dataclass(eq=False)
class _Message:
    receipt: str
    open: int  # records not yet settled
    failed: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    key: str  # the full object key, decoded
    version: str
    at: float


def parse_events(body: str, bucket: str) -> list[Event] | None:
    """ObjectCreated records of this bucket in a message body; None if it is not S3 events."""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and doc.get("Type") == "Notification":  # through SNS
            doc = json.loads(doc.get("Message", ""))
    except (ValueError, TypeError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("Records"), list):
        return None  # e.g. {"Event": "s3:TestEvent"} when the configuration is saved
    events = []
    for record in doc["Records"]:
        try:
            s3 = record["s3"]
            if not str(record["eventName"]).startswith("ObjectCreated") or \
                    s3["bucket"]["name"] != bucket:
                continue
            obj = s3["object"]
            version = (f"version:{obj['versionId']}" if obj.get("versionId")
                       else f"etag:{obj['eTag']}")
            when = record.get("eventTime", "")
            at = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() if when else 0.0
            events.append(Event(unquote_plus(obj["key"]), version, at))
        except (KeyError, TypeError, ValueError):
            log.warning("skipping an S3 event record that cannot be read: %.200s", record)
    return events


def call(inbox: str, what: str, fn: Any, **kwargs: Any) -> Any:
    """fn(**kwargs), its errors translated: ObjectMissing, ConfigError or Unavailable."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "NoSuchVersion", "PreconditionFailed", "404", "412"):
            raise ObjectMissing(f"{what}: {code}") from exc
        if code in ("NoSuchBucket", "AWS.SimpleQueueService.NonExistentQueue",
                    "QueueDoesNotExist", "AccessDenied", "InvalidAddress"):
            raise ConfigError(f"inbox {inbox}: {what}: {code}") from exc
        raise Unavailable(f"inbox {inbox}: {what}: {code or exc}") from exc
    except BotoCoreError as exc:
        raise Unavailable(f"inbox {inbox}: {what}: {exc}") from exc


def read_version(s3: Any, bucket: str, event: Event, *, inbox: str) -> bytes:
    """The object at exactly the version the event names (or only if its ETag still matches:
    a manifest overwritten meanwhile has an event of its own)."""
    kind, _, value = event.version.partition(":")
    condition = {"VersionId": value} if kind == "version" else {"IfMatch": f'"{value}"'}
    reply = call(inbox, f"get {event.key}", s3.get_object, Bucket=bucket, Key=event.key,
                 **condition)
    return bytes(reply["Body"].read())


@dataclass
class S3Inbox:
    bucket: str
    prefix: str
    queue: str = ""  # an SQS queue URL or name; empty: from the bucket's configuration
    wait_s: int = 1
    _open: dict[str, _Message] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.uri = f"s3://{self.bucket}/{self.prefix}"
        self.s3, self.sqs = aws.client("s3"), aws.client("sqs")
        self.queue_url = self._queue_url()

    @classmethod
    def from_uri(cls, uri: str, *, settle_s: float = 0.0) -> S3Inbox:
        """settle_s does not apply: S3 notifies only once an object is whole."""
        parts = urlsplit(uri)
        if not parts.netloc:
            raise ConfigError(f"inbox {uri!r} names no bucket")
        prefix = parts.path.lstrip("/")
        prefix = prefix + "/" if prefix and not prefix.endswith("/") else prefix
        queue = parse_qs(parts.query).get("queue", [""])[0]
        return cls(parts.netloc, prefix, queue)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        return call(self.uri, what, fn, **kwargs)

    def _queue_url(self) -> str:
        if self.queue.startswith(("https://", "http://")):
            return self.queue
        if self.queue:
            return str(self._call("get queue URL", self.sqs.get_queue_url,
                                  QueueName=self.queue)["QueueUrl"])
        config = self._call("read the notification configuration",
                            self.s3.get_bucket_notification_configuration, Bucket=self.bucket)
        for entry in config.get("QueueConfigurations", []):
            rules = entry.get("Filter", {}).get("Key", {}).get("FilterRules", [])
            wanted = next((r["Value"] for r in rules if r["Name"].lower() == "prefix"), "")
            if self.prefix.startswith(wanted) and any(
                    e.startswith("s3:ObjectCreated") for e in entry.get("Events", [])):
                _, _, _, _, account, name = entry["QueueArn"].split(":", 5)
                return str(self._call("get queue URL", self.sqs.get_queue_url, QueueName=name,
                                      QueueOwnerAWSAccountId=account)["QueueUrl"])
        raise ConfigError(f"inbox {self.uri}: the bucket sends no ObjectCreated notifications "
                          "for this prefix to an SQS queue (see README, 'S3 event "
                          "notifications'), or name one: ?queue=NAME")

    def arrivals(self) -> list[Arrival]:
        reply = self._call("receive", self.sqs.receive_message, QueueUrl=self.queue_url,
                           MaxNumberOfMessages=10, WaitTimeSeconds=self.wait_s,
                           VisibilityTimeout=_VISIBILITY_S)
        found = []
        for message in reply.get("Messages", []):
            events = [e for e in parse_events(message.get("Body", ""), self.bucket) or []
                      if e.key.startswith(self.prefix) and not e.key.endswith("/")]
            if not events:  # a test event, another prefix, or not S3's: nothing to do
                self._delete(message["ReceiptHandle"])
                continue
            handle = _Message(message["ReceiptHandle"], len(events))
            for e in events:
                found.append(Arrival(e.key[len(self.prefix):], e.version, e.at,
                                     functools.partial(self._get, e), token=handle))
        return found

    def _get(self, event: Event) -> bytes:
        return read_version(self.s3, self.bucket, event, inbox=self.uri)

    def settle(self, arrival: Arrival, *, handled: bool) -> None:
        handle: _Message = arrival.token
        handle.open -= 1
        handle.failed |= not handled
        if handle.open == 0 and not handle.failed:
            self._delete(handle.receipt)  # else it comes back after its visibility timeout

    def _delete(self, receipt: str) -> None:
        try:
            self._call("delete message", self.sqs.delete_message, QueueUrl=self.queue_url,
                       ReceiptHandle=receipt)
        except Unavailable as exc:  # it comes back, and is recognised as seen
            log.warning("%s", exc)

    def default_input(self, key: str) -> str:
        folder = (self.prefix + key).rsplit("/", 1)[0] if "/" in self.prefix + key else ""
        return f"s3://{self.bucket}/{folder + '/' if folder else ''}"

    def close(self) -> None:
        pass
