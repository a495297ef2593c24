"""What a stream record says: object keys to tag, or why it is rejected.

A record is one of:

- an S3 event notification (``{"Records": [...]}``), also wrapped by SNS
  (``{"Type": "Notification", "Message": "..."}``): each ``ObjectCreated`` record is an
  item of the bucket's job, read as ``intake.s3`` reads the same events from SQS;
- an object URI, ``s3://bucket/key``: the key, in that bucket;
- a bare object key, one line: a key under ``--input``.

Anything else, and every key that fails the manifest rules (``keys.key_problem``), is a
rejection with its reason: logged, recorded, acknowledged, never retried.

Each item carries an event id, what dedupes it when the record is read again: for an S3
event, its bucket, key and version (the same object version notified twice is one
item); otherwise the record's position in the stream.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from gpufleet.index.stream_records import Rejection
from gpufleet.intake.event import buckets_in
from gpufleet.intake.s3 import parse_events
from gpufleet.jsonsafe import loads
from gpufleet.keys import key_problem


@dataclass(frozen=True, slots=True)
class Entry:
    """One item a record names: where its object lives, its key, and its event id."""

    event_id: str
    input: str
    key: str


def event_id(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def read_record(data: bytes, *, position: str, input: str | None
                ) -> tuple[list[Entry], list[Rejection]]:
    """The items a record names, and what in it is rejected (with the reason)."""
    own_id = event_id("record", position)
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return [], [Rejection(own_id, None, "not UTF-8 text")]
    if text.startswith("{"):
        return _events(text, own_id)
    if not text:
        return [], [Rejection(own_id, None, "an empty record")]
    if "\n" in text:
        return [], [Rejection(own_id, None, "more than one line: one key per record")]
    if text.startswith("s3://"):
        bucket, _, key = text[len("s3://"):].partition("/")
        where = f"s3://{bucket}/"
    elif "://" in text:  # file://, https://: a key never has '//' (an empty segment)
        return [], [Rejection(own_id, None, f"not an s3:// object URI: {text[:100]!r}")]
    else:
        key, where = text, input or ""
        if not input:
            return [], [Rejection(own_id, key[:1024], "a bare key, but no --input says where "
                                  "keys live")]
    if problem := key_problem(key):
        return [], [Rejection(own_id, key[:1024], problem)]
    return [Entry(own_id, where, key)], []


def _events(text: str, own_id: str) -> tuple[list[Entry], list[Rejection]]:
    try:
        doc = loads(text)
        if isinstance(doc, dict) and doc.get("Type") == "Notification":  # through SNS
            doc = loads(str(doc.get("Message", "")))
    except ValueError as exc:
        return [], [Rejection(own_id, None, f"invalid JSON: {str(exc).splitlines()[0]}")]
    if not isinstance(doc, dict) or not isinstance(doc.get("Records"), list):
        return [], [Rejection(own_id, None, "JSON, but not an S3 event notification")]
    entries, rejections = [], []
    body = json.dumps(doc)
    for bucket in buckets_in(doc):
        for event in parse_events(body, bucket) or []:
            eid = event_id("s3", bucket, event.key, event.version)
            if problem := key_problem(event.key):
                rejections.append(Rejection(eid, event.key[:1024], problem))
            else:
                entries.append(Entry(eid, f"s3://{bucket}/", event.key))
    if not entries and not rejections:
        rejections.append(Rejection(own_id, None, "an S3 event with no ObjectCreated record"))
    return entries, rejections
