"""Many S3 requests in flight at once, outside the interpreter lock: the AWS CRT's S3 client.

boto3 spends 1.1-2.8 ms of the client's CPU on each GET or PUT of a small object,
about 90 % of it in Python holding the interpreter lock (``benchmarks/store_index.py``),
so a worker moving objects with boto3 tops out near 500-1,000 a second however many
threads it has: short of what one data-centre GPU tags. The CRT (``awscrt``, the C
runtime boto3's own transfer manager can use) signs, sends and parses in its own
threads, in C; Python only hands over each request and collects each answer. A
worker fetches a piece of a task and writes a batch of results this way.

Everything that decides where a request goes is botocore's, so both paths reach
the same objects: the bucket's region is asked of S3 once (botocore follows S3's
redirects to it, the CRT would not), the URL comes from a boto3 client in that
region (endpoint, addressing style: a presigned URL made once, never sent), and the
credentials from botocore's chain (environment, profile, instance and task
roles, refreshed as they expire). Errors mean what they mean on the boto3 path:
a 404 is ObjectMissing (NoSuchBucket: StoreUnavailable), an object over the limit
ObjectTooLarge (judged from its size before its body is read), a key S3 refuses
ObjectRejected, anything else StoreUnavailable. The CRT retries throttling, 5xx
answers and dropped connections itself.

TLS trusts what botocore trusts: the system's store, or the CA bundle named by
``AWS_CA_BUNDLE`` or the profile. (A certificate that fails to verify takes the CRT
about two minutes to report: s2n delays each failed negotiation by 10-30 s, and the
request is retried. Measured against moto over HTTPS; boto3 reports it at once.)

Optional: without ``awscrt`` (in the ``aws`` extra), with ``GPUFLEET_S3_CLIENT=boto3``,
or where the CRT would not go where botocore goes (through a proxy from the
environment, which the CRT does not read), S3Store does everything with boto3, as
before, saying why once.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from gpufleet import aws
from gpufleet.errors import ObjectMissing, ObjectRejected, ObjectTooLarge, StoreUnavailable

_RANGE_TOTAL = re.compile(r"/(\d+)\s*$")  # Content-Range: bytes 0-29999/30000
_PART_BYTES = 8 * 2**20  # larger objects move in parts of this, in parallel
_WAIT_S = 300.0  # a request that hears nothing for this long failed (the CRT times out sooner)


def crt_available() -> bool:
    try:
        import awscrt.s3  # noqa: F401
    except ImportError:
        return False
    return True


class CrtS3:
    """Requests to one bucket, as many in flight as asked; made from its store's boto3 client."""

    def __init__(self, client: Any, bucket: str) -> None:
        import botocore.session
        from awscrt.auth import (
            AwsCredentials,
            AwsCredentialsProvider,
            AwsSignatureType,
            AwsSigningAlgorithm,
            AwsSigningConfig,
        )
        from awscrt.s3 import S3Client, S3RequestTlsMode

        self.bucket = bucket
        # The bucket's own region: botocore follows S3's redirects to it, the CRT does not.
        self.region = _bucket_region(client, bucket)
        if self.region != client.meta.region_name:
            client = aws.client("s3", region=self.region, signature_version="s3v4")
        # Where botocore would send a request for this bucket: a presigned URL is made locally.
        sample = urlsplit(client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60))
        if refusal := _unlike_botocore(sample.scheme, sample.hostname or ""):
            raise RuntimeError(refusal)
        self._host = sample.netloc
        self._base = sample.path[:-1]  # "/bucket/" (path style) or "/" (virtual hosted)
        session = botocore.session.Session()
        credentials = session.get_credentials()

        def current() -> Any:
            if credentials is None:
                raise StoreUnavailable(f"s3://{bucket}/: no AWS credentials found")
            frozen = credentials.get_frozen_credentials()  # refreshed when near expiry
            return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)

        signing = AwsSigningConfig(
            algorithm=AwsSigningAlgorithm.V4, signature_type=AwsSignatureType.HTTP_REQUEST_HEADERS,
            credentials_provider=AwsCredentialsProvider.new_delegate(current), region=self.region,
            service="s3", use_double_uri_encode=False, should_normalize_uri_path=False)
        https = sample.scheme == "https"
        self._client = S3Client(
            region=self.region, signing_config=signing, part_size=_PART_BYTES,
            multipart_upload_threshold=_PART_BYTES,
            tls_mode=S3RequestTlsMode.ENABLED if https else S3RequestTlsMode.DISABLED,
            tls_connection_options=_trusting(session.get_config_variable("ca_bundle"))
            if https else None)

    def get_many(self, keys: Sequence[str], *, max_bytes: int | None = None
                 ) -> list[bytes | Exception]:
        """Each key's bytes, or the exception its read ended with; all in flight at once."""
        from awscrt.s3 import S3RequestType

        requests = [_Request(self, S3RequestType.GET_OBJECT, key, self._http("GET", key),
                             max_bytes=max_bytes) for key in keys]
        return [r.wait() for r in requests]

    def get_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes | Exception]:
        """Bytes start to end (end excluded) of each object, as S3Store.get_range reads them,
        or the exception the read ended with; all in flight at once. Each range is non-empty."""
        from awscrt.s3 import S3RequestType

        requests = [_Request(self, S3RequestType.GET_OBJECT, key, self._http(
            "GET", key, headers={"Range": f"bytes={start}-{end - 1}"}), ranged=True)
            for key, start, end in ranges]
        return [r.wait() for r in requests]

    def put_many(self, objects: Sequence[tuple[str, bytes]], *, content_type: str,
                 headers: Mapping[str, str]) -> list[Exception | None]:
        """Write each (key, bytes) whole; None where it was written, else its exception."""
        from awscrt.s3 import S3RequestType

        requests = [_Request(self, S3RequestType.PUT_OBJECT, key, self._http(
            "PUT", key, data, {"Content-Type": content_type, **headers})) for key, data in objects]
        return [r.wait_written() for r in requests]

    def _http(self, method: str, key: str, data: bytes | None = None,
              headers: Mapping[str, str] | None = None) -> Any:
        from awscrt.http import HttpHeaders, HttpRequest

        pairs = [("Host", self._host), *(headers or {}).items()]
        if data is not None:
            pairs.append(("Content-Length", str(len(data))))
        path = self._base + quote(key, safe="/~")  # as botocore encodes a key
        return HttpRequest(method, path, HttpHeaders(pairs),
                           io.BytesIO(data) if data is not None else None)

    def _make(self, **options: Any) -> Any:
        return self._client.make_request(**options)


def _bucket_region(client: Any, bucket: str) -> str:
    """The region S3 says the bucket is in (x-amz-bucket-region, on success or refusal);
    the client's where it does not say (a missing bucket, an S3-compatible store)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        headers = client.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"]
    except ClientError as exc:
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    except BotoCoreError:
        headers = {}
    return str(headers.get("x-amz-bucket-region") or client.meta.region_name or "us-east-1")


def _trusting(ca_bundle: str | None) -> Any:
    """TLS options trusting botocore's CA bundle (AWS_CA_BUNDLE, the profile's ca_bundle)
    where one is set; None: the system's trust store, as botocore's default."""
    if not ca_bundle:
        return None
    from awscrt.io import ClientTlsContext, TlsContextOptions

    options = TlsContextOptions()
    options.override_default_trust_store_from_path(None, ca_bundle)
    return ClientTlsContext(options).new_connection_options()


def _unlike_botocore(scheme: str, host: str) -> str:
    """Why the CRT would not reach this endpoint as botocore does here ("" if it would):
    botocore takes a proxy from the environment, the CRT does not."""
    import urllib.request  # (here, not at import: only a worker making a CRT client needs it)

    proxy = urllib.request.getproxies().get(scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        return f"requests to {host} go through a proxy ({scheme}_proxy), which the CRT ignores"
    return ""


class _Request:
    """One GET or PUT: for a GET, its body in parts as they come; then done."""

    def __init__(self, s3: CrtS3, kind: Any, key: str, http: Any, *,
                 max_bytes: int | None = None, ranged: bool = False) -> None:
        self.where = f"s3://{s3.bucket}/{key}"
        self.max_bytes, self.ranged = max_bytes, ranged
        self.parts: list[tuple[int, bytes]] = []
        self.size = 0
        self.error: Exception | None = None
        self.done = threading.Event()
        options: dict[str, Callable[..., None]] = {"on_done": self._on_done}
        if http.method == "GET":
            options.update(on_headers=self._on_headers, on_body=self._on_body)
        self.request = s3._make(type=kind, request=http, **options)

    def _on_headers(self, status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
        if self.ranged and status_code == 200:  # the whole object: refused before its body
            self._refuse(StoreUnavailable(f"{self.where}: the store ignored a Range request "
                                          "(answered the whole object)"))
            return
        if self.max_bytes is None or status_code >= 300:
            return
        found = {name.lower(): value for name, value in headers}
        total = _RANGE_TOTAL.search(found.get("content-range", ""))
        size = int(total.group(1)) if total else int(found.get("content-length", "0") or 0)
        if size > self.max_bytes:  # refused before a byte of its body is read
            self._refuse(ObjectTooLarge(size, self.max_bytes))

    def _on_body(self, chunk: Any, offset: int, **_: Any) -> None:
        # Parts of a large object may come out of order: placed by offset at the end.
        self.parts.append((offset, bytes(chunk)))
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes and self.error is None:
            self._refuse(ObjectTooLarge(self.size, self.max_bytes))  # a lying size

    def _refuse(self, error: Exception) -> None:
        self.error = error
        self.request.cancel()

    def _on_done(self, error: Exception | None = None, status_code: int | None = None,
                 error_body: bytes | None = None, **_: Any) -> None:
        if self.error is None and error is not None:
            code, message = _s3_error(error_body)
            if self.ranged and status_code == 416:  # a range past the object's end: no bytes
                pass
            elif status_code == 404 and code != "NoSuchBucket":
                self.error = ObjectMissing(f"no such object: {self.where}")
            elif code == "KeyTooLongError":
                self.error = ObjectRejected(f"cannot write {self.where}: key too long")
            elif code:
                self.error = StoreUnavailable(f"{self.where}: {code}: {message or code}")
            else:  # no answer at all (refused, reset, timed out), or one without a body
                self.error = StoreUnavailable(
                    f"{self.where}: {f'HTTP {status_code}' if status_code else error}")
        self.done.set()

    def _wait(self) -> Exception | None:
        if not self.done.wait(_WAIT_S):
            self.request.cancel()
            return StoreUnavailable(f"{self.where}: no answer in {_WAIT_S:.0f} s")
        return self.error

    def wait(self) -> bytes | Exception:
        return self._wait() or b"".join(part for _, part in sorted(self.parts))

    def wait_written(self) -> Exception | None:
        return self._wait()


def _s3_error(body: bytes | None) -> tuple[str, str]:
    """The <Code> and <Message> of an S3 error document; empty where there is none."""
    text = (body or b"").decode("utf-8", "replace")
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    return (code.group(1) if code else "", message.group(1) if message else "")
