"""Amazon S3, or any S3-compatible store (MinIO, Ceph, ...), through boto3.

The endpoint, the credentials and the retry settings come only from the
standard AWS configuration (``AWS_ENDPOINT_URL_S3``, ``AWS_PROFILE``,
environment keys, instance and task roles; see gpufleet.aws), so one URL,
``s3://bucket/prefix/``, works everywhere. The connection pool is sized to the
worker's fetch concurrency, retries default to botocore's standard mode
(throttling and 5xx answers are retried with jittered backoff), reads
check the object's size before its body and stream in chunks, and writes can
ask for server-side encryption (SSE-S3 or a KMS key). A worker's reads of a
piece of a task, and its writes of a batch of results, go out together through
the AWS CRT where it is installed (``get_many``, ``put_many``, store/s3_crt.py):
boto3 holds the interpreter lock too long a request for one worker to move more
than a thousand objects a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gpufleet import aws
from gpufleet.errors import (
    ConfigError,
    ObjectMissing,
    ObjectRejected,
    ObjectTooLarge,
    StoreUnavailable,
)
from gpufleet.keys import MAX_KEY_BYTES, key_problem
from gpufleet.store.base import Location, one_by_one
from gpufleet.store.s3_crt import CrtS3, crt_available

if TYPE_CHECKING:
    from gpufleet.config import Settings

log = logging.getLogger(__name__)

MAX_PRESIGN_S = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
_MISSING = {"NoSuchKey", "404", "NotFound"}

_CHUNK_BYTES = 1024 * 1024
SSE_MODES = ("AES256", "aws:kms")


def s3_prefix(uri: str) -> str:
    """The key prefix of ``s3://bucket/prefix/``: "" or ending with "/" (a folder)."""
    parts = urlsplit(uri)
    if not parts.netloc:
        raise ConfigError(f"{uri!r}: an s3:// location needs a bucket: s3://bucket/prefix/")
    if parts.query or parts.fragment or "?" in uri or "#" in uri:
        raise ConfigError(f"{uri!r}: an s3:// location may not contain '?' or '#'")
    prefix = parts.path[1:]
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    problem = key_problem(prefix.rstrip("/")) if prefix else None
    if problem:
        raise ConfigError(f"{uri!r}: its prefix is not usable: {problem}")
    return prefix


class S3Store:
    """One bucket. Keys are object keys; ``url()`` names them as ``s3://bucket/key``."""

    # Requests are round trips of milliseconds: worth many at once. Through the CRT each
    # fetch thread has a piece of 8 GETs in flight: 16 threads, 128 GETs, what 6,000 objects
    # a second need at ~20 ms a GET (Little's law); a GPU worker reads that fast.
    concurrency = 16

    def __init__(self, bucket: str, *, max_pool_connections: int = 10, max_attempts: int = 5,
                 sse: str = "", sse_kms_key_id: str = "", client: Any = None,
                 use_crt: bool = True) -> None:
        if not bucket:
            raise ConfigError("an s3:// location needs a bucket: s3://bucket/prefix/")
        if sse_kms_key_id and not sse:
            sse = "aws:kms"
        if sse and sse not in SSE_MODES:
            raise ConfigError(f"GPUFLEET_SSE={sse!r}: expected AES256 or aws:kms")
        self.bucket = bucket
        self._sse: dict[str, str] = {}
        if sse:
            self._sse["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self._sse["SSEKMSKeyId"] = sse_kms_key_id
        self.client = client if client is not None else aws.client(
            "s3", attempts=max_attempts, max_pool_connections=max_pool_connections,
            signature_version="s3v4", connect_timeout=10, read_timeout=60)
        # Many requests at once through the CRT, made on first use (store/s3_crt.py): a
        # process that only lists, presigns or submits never imports awscrt.
        self.use_crt = use_crt
        self._crt: CrtS3 | None = None
        self._crt_lock = threading.Lock()

    @classmethod
    def from_settings(cls, bucket: str, settings: Settings | None) -> S3Store:
        if settings is None:
            return cls(bucket)
        width = settings.worker.fetch_concurrency or cls.concurrency
        return cls(bucket, max_pool_connections=max(10, width + 2),
                   sse=settings.storage.sse, sse_kms_key_id=settings.storage.sse_kms_key_id,
                   use_crt=settings.storage.s3_client == "auto")

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        with _translated(self, key):
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                # The size is in the response headers: an object over the limit is
                # refused before a byte of its body is read (close() drops the connection).
                size = int(response.get("ContentLength", 0))
                if max_bytes is not None and size > max_bytes:
                    raise ObjectTooLarge(size, max_bytes)
                data = bytearray()
                for chunk in body.iter_chunks(_CHUNK_BYTES):
                    data += chunk
                    if max_bytes is not None and len(data) > max_bytes:
                        raise ObjectTooLarge(len(data), max_bytes)  # a lying Content-Length
            finally:
                body.close()
            return bytes(data)

    def get_many(self, keys: Sequence[str], *, max_bytes: int | None = None
                 ) -> list[bytes | Exception]:
        """Each object's bytes, or the error reading it ended with (as get raises them):
        all in flight at once through the CRT where it is installed, else one by one."""
        crt = self._crt_client()
        if crt is not None:
            return crt.get_many(keys, max_bytes=max_bytes)
        return one_by_one(lambda key: self.get(key, max_bytes=max_bytes), keys)

    def get_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes | Exception]:
        """get_range of each (key, start, end), or the error it ended with (a shard's
        members): all in flight at once through the CRT where it is installed."""
        crt = self._crt_client()
        if crt is None or any(end <= start for _, start, end in ranges):
            return one_by_one(lambda r: self.get_range(*r), ranges)
        return crt.get_ranges(ranges)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """One GET with a Range header; an object shorter than start gives no bytes."""
        if not 0 <= start <= end:
            raise ValueError(f"a byte range needs 0 <= start <= end, not {start}-{end}")
        if end == start:
            if not self.exists(key):
                raise ObjectMissing(f"no such object: s3://{self.bucket}/{key}")
            return b""
        try:
            with _translated(self, key):
                response = self.client.get_object(Bucket=self.bucket, Key=key,
                                                  Range=f"bytes={start}-{end - 1}")
                body = response["Body"]
                try:
                    # At most end - start bytes, whatever the answer says (a server that
                    # ignores Range answers 200 with the whole object).
                    data = body.read(end - start)
                finally:
                    body.close()
        except _RangeNotSatisfiable:
            return b""
        if response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 200 and start:
            raise StoreUnavailable(f"s3://{self.bucket}/{key}: the store ignored a Range "
                                   "request (answered the whole object)")
        return bytes(data)

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        if (too_long := _too_long(self, key)) is not None:
            raise too_long
        # A PUT is atomic in S3: readers see the old object or the new one.
        with _translated(self, key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                   ContentType=content_type, **self._sse)

    def put_many(self, objects: Sequence[tuple[str, bytes]], *,
                 content_type: str = "application/octet-stream") -> list[Exception | None]:
        """Write each (key, bytes) as put does; None where written, else the error it
        ended with: all in flight at once through the CRT where it is installed."""
        crt = self._crt_client()
        if crt is None:
            return one_by_one(lambda o: self.put(*o, content_type=content_type), objects)
        found: list[Exception | None] = [_too_long(self, key) for key, _ in objects]
        sent = [(key, data) for (key, data), error in zip(objects, found, strict=True)
                if error is None]
        written = iter(crt.put_many(sent, content_type=content_type,
                                    headers=self._sse_headers()))
        return [error if error is not None else next(written) for error in found]

    def _crt_client(self) -> CrtS3 | None:
        """The CRT client, made on first use; None where it is not to be (or cannot be) used."""
        if not self.use_crt:
            return None
        with self._crt_lock:
            if self._crt is None and self.use_crt:
                if not crt_available():  # not installed: boto3, as without the aws extra's CRT
                    self.use_crt = False
                    return None
                try:
                    self._crt = CrtS3(self.client, self.bucket)
                except Exception as exc:  # a broken install, an unusable endpoint: say so once
                    log.warning("s3://%s/: cannot use the AWS CRT, using boto3 instead: %s",
                                self.bucket, exc)
                    self.use_crt = False
            return self._crt

    def _sse_headers(self) -> dict[str, str]:
        names = {"ServerSideEncryption": "x-amz-server-side-encryption",
                 "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id"}
        return {names[k]: v for k, v in self._sse.items()}

    def put_file(self, key: str, path: Path, *,
                 content_type: str = "application/octet-stream") -> None:
        """Like put, from a file: a multipart upload for a big one (bulk exports)."""
        from boto3.exceptions import S3UploadFailedError

        with _translated(self, key):
            try:
                self.client.upload_file(str(path), self.bucket, key, ExtraArgs={
                    "ContentType": content_type, **self._sse})
            except S3UploadFailedError as exc:
                raise StoreUnavailable(f"s3://{self.bucket}/{key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        try:
            with _translated(self, key):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except ObjectMissing:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under prefix in key order, a page of up to 1000 at a time."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        with _translated(self, prefix):
            for page in pages:
                for entry in page.get("Contents", ()):
                    yield entry["Key"]

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def presign(self, key: str, *, expires_s: int) -> str:
        """An HTTPS GET URL for the object, valid for expires_s (1 s to 7 days)."""
        if not 1 <= expires_s <= MAX_PRESIGN_S:
            raise ConfigError(f"a presigned URL lives 1 to {MAX_PRESIGN_S} s, not {expires_s}")
        with _translated(self, key):
            url: str = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=int(expires_s))
        return url

    def check(self) -> None:
        """StoreUnavailable unless the bucket exists and these credentials reach it."""
        try:
            with _translated(self, ""):
                self.client.head_bucket(Bucket=self.bucket)
        except ObjectMissing:
            raise StoreUnavailable(f"s3://{self.bucket}/: no such bucket") from None


def _too_long(store: S3Store, key: str) -> ObjectRejected | None:
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return ObjectRejected(f"cannot write s3://{store.bucket}/{key}: key too long "
                              f"(over S3's {MAX_KEY_BYTES:,} bytes)")
    return None


class _RangeNotSatisfiable(Exception):
    """A range that starts at or past the object's end (HTTP 416): no bytes, not an error."""


@contextmanager
def _translated(store: S3Store, key: str) -> Iterator[None]:
    """Translate botocore's exceptions into gpufleet's at the adapter boundary."""
    from botocore.exceptions import BotoCoreError, ClientError

    where = f"s3://{store.bucket}/{key}"
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code == "InvalidRange":
            raise _RangeNotSatisfiable(where) from None
        if code in _MISSING:
            raise ObjectMissing(f"no such object: {where}") from None
        if code == "NoSuchBucket":
            raise StoreUnavailable(f"{where}: no such bucket") from exc
        if code == "KeyTooLongError":
            raise ObjectRejected(f"cannot write {where}: key too long") from exc
        raise StoreUnavailable(f"{where}: {code}: {error.get('Message') or code}") from exc
    except BotoCoreError as exc:
        # Connection refused or reset, timeouts, no credentials, a broken stream.
        raise StoreUnavailable(f"{where}: {exc}") from exc


def open_s3_location(uri: str, settings: Settings | None) -> Location:
    """``s3://bucket/prefix/`` as a Location (see ``store.base.open_location``)."""
    bucket = urlsplit(uri).netloc
    prefix = s3_prefix(uri)
    return Location(S3Store.from_settings(bucket, settings), prefix, f"s3://{bucket}/{prefix}")
