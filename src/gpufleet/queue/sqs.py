"""The Amazon SQS queue: ``sqs://BASE`` or ``https://sqs.REGION.amazonaws.com/ACCOUNT/BASE``.

Each named queue (one per model) is a standard SQS queue with a dead-letter
queue, named by ``queue_name`` (see ``sqs_setup`` for the family and how
queues are created). The mapping onto SQS:

- receive: ``ReceiveMessage`` in batches of 10 with the lease as its
  ``VisibilityTimeout`` (whole seconds, rounded up); long polling up to
  ``wait_s`` (at most 20 s) when the caller asks for it. ``receives`` is
  ``ApproximateReceiveCount``; the token is the receipt handle; the task id
  is the ``MessageId``.
- extend (heartbeat) and release (nack backoff, or 0 to hand back on drain):
  ``ChangeMessageVisibility``. A task waiting out its backoff is therefore
  "not visible" to SQS and counts as in flight in ``depth()``.
- ack: ``DeleteMessage``. dead_letter: the body goes to the dead-letter queue
  with its task id, receives and last error as message attributes, then the
  message is deleted. A task that is never settled (its workers keep dying)
  is moved by the queue's RedrivePolicy after ``maxReceiveCount`` receives.
- dead_letters peeks at the dead-letter queue (receive, then make visible
  again); redrive moves each dead letter back as a new message (receives reset).
- Bodies are at most 256 KiB (``max_message_bytes``), sent 10 to a batch.

What SQS cannot promise: a receipt handle from an earlier delivery may still
delete or change the message after another consumer has received it ("the
request succeeds, but the message might not be deleted"). So a stale lease is
refused only when this process has already settled it; across processes a
stale ack can delete a task another worker holds. That worker's results are
upserts and its own ack then fails harmlessly: at-least-once still holds.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from gpufleet.errors import TaskTooLarge
from gpufleet.queue.base import DeadLetter, Lease, QueueBase, QueueDepth
from gpufleet.queue.sqs_dead import DeadLetterQueue
from gpufleet.queue.sqs_setup import (
    DLQ_SUFFIX,
    RETENTION_S,
    ClientError,
    client,
    create_pair,
    ensure_queue_pair,
    error_code,
    family_settings,
    parse_url,
    queue_name,
    redrive_policy,
    send,
    translate,
    url_of,
)

__all__ = ["SqsQueue", "ensure_queue_pair", "queue_name"]

MAX_VISIBILITY_S = 43_200  # 12 h
MAX_DELAY_S = 900  # SQS delays a new message by 15 min at most
_LOST = ("ReceiptHandleIsInvalid", "MessageNotInflight")


class SqsQueue(QueueBase):
    """The queue called ``name`` in the SQS queue family at ``url``; see the module docstring."""

    supports_delay = True
    max_message_bytes = 248 * 1024  # SQS takes 256 KiB: 8 KiB stay free for a dead letter's
    # attributes (task id, receives, its last error cut to 4,000 bytes)

    def __init__(self, url: str, *, name: str) -> None:
        self.ref = parse_url(url)
        self.name = name
        self.queue_name = self.where = queue_name(self.ref.base, name)
        self._sqs = client(self.ref.region)
        self._lock = threading.Lock()
        self._urls: tuple[str, str] | None = None  # (queue, dead-letter queue), on first use
        self._dead = DeadLetterQueue(self._sqs, lambda: self._resolve()[1], self._translate)
        self.max_receives = 0  # the queue's maxReceiveCount, on first use
        self._settled: OrderedDict[str, None] = OrderedDict()  # handles this process settled

    # -- the TaskQueue protocol -------------------------------------------------------------

    def enqueue(self, bodies: Sequence[str], *, delay_s: float = 0.0) -> None:
        for body in bodies:
            if len(body) > self.max_message_bytes // 4 and \
                    (size := len(body.encode())) > self.max_message_bytes:
                raise TaskTooLarge(
                    f"task body of {size} bytes is over this queue's limit of "
                    f"{self.max_message_bytes} bytes (max_message_bytes); put fewer items "
                    "in each task")
        delay = {"DelaySeconds": min(MAX_DELAY_S, math.ceil(delay_s))} if delay_s > 0 else {}
        with self._translate():
            send(self._sqs, self._url, [{"MessageBody": body, **delay} for body in bodies])

    def receive(self, max_tasks: int, *, visibility_timeout_s: float,
                wait_s: float = 0.0) -> list[Lease]:
        timeout, wait = _seconds(visibility_timeout_s), min(20, math.ceil(max(0.0, wait_s)))
        leases: list[Lease] = []
        while len(leases) < max_tasks:
            want = min(10, max_tasks - len(leases))
            with self._translate():
                got = self._sqs.receive_message(
                    QueueUrl=self._url, MaxNumberOfMessages=want, VisibilityTimeout=timeout,
                    WaitTimeSeconds=wait, MessageSystemAttributeNames=["ApproximateReceiveCount"],
                ).get("Messages", [])
            leases += [Lease(m["MessageId"], m["Body"],
                             int(m["Attributes"]["ApproximateReceiveCount"]), m["ReceiptHandle"])
                       for m in got]
            if len(got) < want:
                break
            wait = 0
        return leases

    def extend(self, lease: Lease, *, visibility_timeout_s: float) -> bool:
        return self._change(lease, _seconds(visibility_timeout_s), settle=False)

    def ack(self, lease: Lease) -> bool:
        if self._was_settled(lease):
            return False
        with self._translate():
            try:
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=lease.token)
            except ClientError as exc:
                if _lost(exc):
                    return False
                raise
        return self._settle(lease)

    def ack_batch(self, leases: Sequence[Lease]) -> list[bool]:
        """ack for each lease, 10 to a DeleteMessageBatch request."""
        done = [False] * len(leases)
        todo = [(i, lease) for i, lease in enumerate(leases) if not self._was_settled(lease)]
        for start in range(0, len(todo), 10):
            batch = dict(todo[start:start + 10])
            with self._translate():
                result = self._sqs.delete_message_batch(QueueUrl=self._url, Entries=[
                    {"Id": str(i), "ReceiptHandle": lease.token} for i, lease in batch.items()])
            for ok in result.get("Successful", []):
                done[int(ok["Id"])] = self._settle(batch[int(ok["Id"])])
            for failed in result.get("Failed", []):
                if not str(failed.get("Code", "")).endswith(_LOST):
                    done[int(failed["Id"])] = self.ack(batch[int(failed["Id"])])  # once more
        return done

    def release(self, lease: Lease, *, delay_s: float = 0.0, error: str | None = None) -> bool:
        return self._change(lease, _seconds(delay_s), settle=True)

    def dead_letter(self, lease: Lease, *, error: str) -> bool:
        # Make sure the lease still holds the message before copying it to the DLQ.
        if not self._change(lease, 60, settle=False):
            return False
        self._dead.put(lease, error)
        return self.ack(lease)

    def dead_letters(self) -> list[DeadLetter]:
        self._resolve()  # learns max_receives: what a redrive-policy dead letter was received
        return self._dead.peek(self.max_receives)

    def redrive(self) -> int:
        return self._dead.move_to(self._url)

    def depth(self) -> QueueDepth:
        def counts(url: str) -> list[int]:
            with self._translate():
                attrs = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed"])["Attributes"]
            return [int(attrs.get(k, 0)) for k in ("ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed")]

        visible, hidden, delayed = counts(self._url)
        return QueueDepth(queued=visible + delayed, in_flight=hidden,
                          dead=sum(counts(self._resolve()[1])))

    def close(self) -> None:
        self._sqs.close()

    # -- internals --------------------------------------------------------------------------

    @property
    def _url(self) -> str:
        return self._resolve()[0]

    def _resolve(self) -> tuple[str, str]:
        """Find (or create, like the base queue) this queue and its dead-letter queue."""
        if self._urls is None:
            account = self.ref.account
            with self._translate():
                url = url_of(self._sqs, self.queue_name, account)
                if url is None:
                    max_receives, attrs = family_settings(self._sqs, self.ref)
                    url = create_pair(self._sqs, self.queue_name, max_receives=max_receives,
                                      account=account, attributes=attrs)
                policy = redrive_policy(self._sqs, url) or {}
                arn = str(policy.get("deadLetterTargetArn", ""))
                dlq = arn.rsplit(":", 1)[-1] if arn else self.queue_name + DLQ_SUFFIX
                dlq_url = url_of(self._sqs, dlq, account) or str(self._sqs.create_queue(
                    QueueName=dlq, Attributes={"MessageRetentionPeriod": str(RETENTION_S)},
                )["QueueUrl"])
            self.max_receives = int(policy.get("maxReceiveCount", 0))
            self._urls = (url, dlq_url)
        return self._urls

    def _change(self, lease: Lease, seconds: int, *, settle: bool) -> bool:
        if self._was_settled(lease):
            return False
        with self._translate():
            try:
                self._sqs.change_message_visibility(
                    QueueUrl=self._url, ReceiptHandle=lease.token, VisibilityTimeout=seconds)
            except ClientError as exc:
                if _lost(exc):
                    return False
                raise
        return self._settle(lease) if settle else True

    def _was_settled(self, lease: Lease) -> bool:
        with self._lock:
            return lease.token in self._settled

    def _settle(self, lease: Lease) -> bool:
        with self._lock:
            if lease.token in self._settled:
                return False
            self._settled[lease.token] = None
            while len(self._settled) > 10_000:
                self._settled.popitem(last=False)
        return True

    def _translate(self) -> Any:
        return translate(f"SQS queue {self.queue_name!r}")


def _lost(exc: ClientError) -> bool:
    """The receipt handle no longer holds the message (deleted, expired, not in flight)."""
    code = error_code(exc)
    message = str(exc.response.get("Error", {}).get("Message", ""))
    return code.endswith(_LOST) or (code.endswith("InvalidParameterValue")
                                    and "receipt handle" in message.lower())


def _seconds(value: float) -> int:
    return min(MAX_VISIBILITY_S, math.ceil(max(0.0, value)))
