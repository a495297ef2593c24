"""An SQS queue's dead-letter queue: copy a task in, list what is there, move it all back.

SQS has no way to list a queue, so ``peek`` receives every message for a
short while and then makes them all visible again at once. A dead letter
copied in by ``put`` carries its task id, receives, last error and time of
death as message attributes; one moved in by the queue's RedrivePolicy (its
workers kept dying) carries only its body, and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from gpufleet.queue.base import DeadLetter, Lease
from gpufleet.queue.sqs_setup import send

_ATTR = "gpufleet-"  # prefix of the attributes a dead letter carries
_PEEK_S = 30  # how long a listing hides the dead letters if it dies before showing them again


class DeadLetterQueue:
    def __init__(self, sqs: Any, url: Callable[[], str],
                 translate: Callable[[], AbstractContextManager[None]]) -> None:
        self._sqs, self._url, self._translate = sqs, url, translate

    def put(self, lease: Lease, error: str) -> None:
        attrs = {"task-id": lease.id, "receives": str(lease.receives),
                 "error": error.encode()[:4000].decode(errors="ignore") or "-",
                 "died-at": f"{time.time():.3f}"}
        with self._translate():
            send(self._sqs, self._url(), [{"MessageBody": lease.body, "MessageAttributes": {
                _ATTR + k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}}])

    def peek(self, max_receives: int) -> list[DeadLetter]:
        """Every dead letter, oldest death first."""
        seen: dict[str, dict[str, Any]] = {}
        handles: list[str] = []
        try:
            while messages := self._receive(_PEEK_S):
                for m in messages:
                    seen.setdefault(m["MessageId"], m)
                    handles.append(m["ReceiptHandle"])
        finally:
            for i in range(0, len(handles), 10):
                with self._translate():
                    self._sqs.change_message_visibility_batch(QueueUrl=self._url(), Entries=[
                        {"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": 0}
                        for n, h in enumerate(handles[i:i + 10])])
        letters = [_letter(m, max_receives) for m in seen.values()]
        return sorted(letters, key=lambda d: (d.died_at, d.id))

    def move_to(self, url: str) -> int:
        """Send every dead letter back to the queue at url as a new task; how many."""
        total = 0
        while messages := self._receive(60):
            with self._translate():
                send(self._sqs, url, [{"MessageBody": m["Body"]} for m in messages])
                self._sqs.delete_message_batch(QueueUrl=self._url(), Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)])
            total += len(messages)
        return total

    def _receive(self, visibility_timeout_s: int) -> list[dict[str, Any]]:
        with self._translate():
            return list(self._sqs.receive_message(
                QueueUrl=self._url(), MaxNumberOfMessages=10, WaitTimeSeconds=0,
                VisibilityTimeout=visibility_timeout_s, MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["SentTimestamp"]).get("Messages", []))


def _letter(m: dict[str, Any], max_receives: int) -> DeadLetter:
    attrs = {k.removeprefix(_ATTR): v["StringValue"]
             for k, v in m.get("MessageAttributes", {}).items() if k.startswith(_ATTR)}
    receives = int(attrs.get("receives", max_receives))
    error = attrs.get("error") or (f"received {receives} times and never settled (moved by "
                                   "the queue's redrive policy)")
    sent = int(m.get("Attributes", {}).get("SentTimestamp", 0)) / 1000
    return DeadLetter(attrs.get("task-id", m["MessageId"]), m["Body"], receives, error,
                      float(attrs.get("died-at", sent)))
