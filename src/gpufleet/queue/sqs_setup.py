"""Amazon SQS plumbing: queue URLs and names, the boto3 client, creating queue pairs.

``GPUFLEET_QUEUE`` names a *queue family* by its base queue: ``sqs://BASE`` or
``https://sqs.REGION.amazonaws.com/ACCOUNT/BASE``. ``gpufleet init
--create-queues`` creates ``BASE`` and ``BASE-dlq`` (``ensure_queue_pair``);
each model then gets a queue of its own, created on first use with the base
queue's settings (redrive policy, retention, encryption). Endpoints, region and
credentials come only from the standard AWS configuration
(``AWS_ENDPOINT_URL_SQS``, ``AWS_REGION``, profiles, instance roles).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gpufleet import aws
from gpufleet.errors import ConfigError, QueueUnavailable
from gpufleet.jitter import equal_jitter

try:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
    )
except ImportError as exc:  # pragma: no cover - the extra is installed in development
    raise ConfigError("the SQS queue needs boto3: pip install 'gpufleet[aws]'") from exc

__all__ = ["DLQ_SUFFIX", "RETENTION_S", "ClientError", "QueueRef", "create_pair",
           "ensure_queue_pair", "parse_url", "queue_name", "send", "translate"]

log = logging.getLogger(__name__)

MAX_NAME = 80  # SQS: up to 80 of A-Z a-z 0-9 - _
DLQ_SUFFIX = "-dlq"
RETENTION_S = 1_209_600  # 14 days, the most SQS keeps a message: a long backlog never expires
DEFAULT_MAX_RECEIVES = 5  # when the base queue has no redrive policy (GPUFLEET_MAX_RECEIVES)
_VALID = re.compile(r"[A-Za-z0-9_-]+")
_COPIED = ("MessageRetentionPeriod", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds",
           "SqsManagedSseEnabled")


@dataclass(frozen=True, slots=True)
class QueueRef:
    """What a queue URL says: the base queue's name, and its region and account if given."""

    base: str
    region: str | None = None
    account: str | None = None


def parse_url(url: str) -> QueueRef:
    parts = urlsplit(url if "://" in url else f"sqs://{url}")
    if parts.scheme == "sqs":
        base, region, account = (parts.netloc + parts.path).strip("/"), None, None
    elif parts.scheme == "https":
        host, path = parts.hostname or "", parts.path.strip("/").split("/")
        found = re.search(r"(?:^|\.)sqs\.([a-z0-9-]+)\.", host)
        region = found.group(1) if found else None
        account, base = (path[0], path[1]) if len(path) == 2 else (None, "")
    else:
        base, region, account = "", None, None
    if not _VALID.fullmatch(base) or len(base) > MAX_NAME - len(DLQ_SUFFIX):
        raise ConfigError(f"bad SQS queue URL {url!r}: expected sqs://NAME or "
                          "https://sqs.REGION.amazonaws.com/ACCOUNT/NAME, NAME up to "
                          f"{MAX_NAME - len(DLQ_SUFFIX)} of A-Z a-z 0-9 - _ (standard queues)")
    return QueueRef(base, region, account)


def queue_name(base: str, name: str) -> str:
    """The SQS queue for the queue called ``name`` (a model spec) in the family ``base``.

    ``<base>-<name with every run of other characters made one '-'>``, cut so that
    with ``-<8 hex digits>`` it is at most 71 characters (its dead-letter queue
    adds ``-dlq``), where the hex digits are a hash of base and name: the same
    spec always maps to the same queue, and two specs that read alike once cut or
    cleaned (``synthetic?item_ms=5`` and ``synthetic?item-ms=5``) never share one.
    """
    digest = hashlib.sha256(f"{base}\n{name}".encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")
    stem = f"{base}-{slug}"[: MAX_NAME - len(DLQ_SUFFIX) - len(digest) - 1].rstrip("-")
    return f"{stem}-{digest}"


def client(region: str | None) -> Any:
    """An SQS client from the standard AWS configuration (gpufleet.aws).

    The region: the queue URL's, else ``AWS_REGION``, else boto3's own
    (``AWS_DEFAULT_REGION``, the profile).
    """
    return aws.client("sqs", region=region, attempts=4, max_pool_connections=32,
                      connect_timeout=5, read_timeout=30)


def error_code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("QueryErrorCode") or error.get("Code") or "")


def missing(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and error_code(exc).endswith(
        ("QueueDoesNotExist", "NonExistentQueue"))


@contextmanager
def translate(what: str) -> Iterator[None]:
    """Driver errors become one line: ConfigError for setup, QueueUnavailable for the rest."""
    try:
        yield
    except (NoCredentialsError, NoRegionError) as exc:
        raise ConfigError(f"{what}: {exc}") from exc
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        raise QueueUnavailable(f"{what}: {error_code(exc)}: {message}".rstrip(": ")) from exc
    except BotoCoreError as exc:
        raise QueueUnavailable(f"{what}: {exc}") from exc


def url_of(sqs: Any, name: str, account: str | None) -> str | None:
    """The queue's URL, or None if there is no such queue."""
    args = {"QueueName": name, **({"QueueOwnerAWSAccountId": account} if account else {})}
    try:
        return str(sqs.get_queue_url(**args)["QueueUrl"])
    except ClientError as exc:
        if missing(exc):
            return None
        raise


def create_pair(sqs: Any, name: str, *, max_receives: int, account: str | None = None,
                attributes: dict[str, str] | None = None) -> str:
    """Create ``name`` and ``name-dlq`` unless they exist; return the queue's URL.

    An existing queue is used as it is; a warning says if its redrive policy is
    missing or counts differently.
    """
    url = url_of(sqs, name, account)
    if url is not None:
        policy = redrive_policy(sqs, url)
        if policy is None:
            log.warning("SQS queue %s has no redrive policy: a task that crashes every worker "
                        "is never dead-lettered", name)
        elif int(policy["maxReceiveCount"]) != max_receives:
            log.warning("SQS queue %s dead-letters after %s receives, GPUFLEET_MAX_RECEIVES is %d",
                        name, policy["maxReceiveCount"], max_receives)
        return url
    attrs = {"MessageRetentionPeriod": str(RETENTION_S), **(attributes or {})}
    dlq_url = sqs.create_queue(QueueName=name + DLQ_SUFFIX, Attributes=attrs)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    policy = {"deadLetterTargetArn": arn["Attributes"]["QueueArn"],
              "maxReceiveCount": str(max_receives)}
    return str(sqs.create_queue(QueueName=name, Attributes={
        **attrs, "RedrivePolicy": json.dumps(policy)})["QueueUrl"])


def redrive_policy(sqs: Any, url: str) -> dict[str, Any] | None:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    text = attrs.get("Attributes", {}).get("RedrivePolicy")
    return dict(json.loads(text)) if text else None


def family_settings(sqs: Any, ref: QueueRef) -> tuple[int, dict[str, str]]:
    """The base queue's maxReceiveCount and the attributes each model's queue copies."""
    url = url_of(sqs, ref.base, ref.account)
    if url is None:
        raise ConfigError(f"SQS queue {ref.base!r} does not exist: create it and its "
                          "dead-letter queue with `gpufleet init --create-queues`")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    policy = json.loads(attrs["RedrivePolicy"]) if attrs.get("RedrivePolicy") else {}
    max_receives = int(policy.get("maxReceiveCount", DEFAULT_MAX_RECEIVES))
    return max_receives, {k: str(attrs[k]) for k in _COPIED if k in attrs}


def ensure_queue_pair(url_or_name: str, *, max_receives: int) -> None:
    """Create the base queue of ``url_or_name`` and its dead-letter queue, if missing.

    The queue dead-letters through its RedrivePolicy after ``max_receives``
    receives (a task whose workers keep crashing); existing queues are left as
    they are. Safe to run from several machines at once.
    """
    if max_receives < 1:
        raise ConfigError("max_receives must be at least 1")
    ref = parse_url(url_or_name)
    with translate(f"SQS queue {ref.base!r}"):
        create_pair(client(ref.region), ref.base, max_receives=max_receives,
                    account=ref.account)


def send(sqs: Any, url: str, entries: list[dict[str, Any]]) -> None:
    """SendMessageBatch: 10 entries and 256 KiB at most to a request, failed entries retried."""
    for batch in _batches(entries, 256 * 1024):
        todo = {str(i): entry for i, entry in enumerate(batch)}
        for attempt in range(4):
            result = sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": i, **entry} for i, entry in todo.items()])
            todo = {f["Id"]: todo[f["Id"]] for f in result.get("Failed", [])}
            if not todo:
                break
            time.sleep(equal_jitter(0.1 * 2 ** attempt))
        else:
            raise QueueUnavailable(f"SQS refused {len(todo)} message(s) for {url}")


def _batches(entries: list[dict[str, Any]], limit: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        n = len(entry["MessageBody"].encode()) + sum(
            len(k) + len(v["StringValue"].encode()) + 6
            for k, v in entry.get("MessageAttributes", {}).items())
        if batch and (len(batch) == 10 or size + n > limit):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += n
    if batch:
        yield batch
