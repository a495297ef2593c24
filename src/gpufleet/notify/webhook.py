"""Webhook delivery: an HTTPS POST of the event, signed, to the address the guard checked.

The signature is Stripe's scheme: ``X-Gpufleet-Signature: t=<unix time>,v1=<hex>``
where the hex is HMAC-SHA256 of ``"<t>.<body>"`` under the target's secret. A
receiver recomputes it, compares in constant time, and refuses an old ``t``
(replays). ``X-Gpufleet-Delivery`` is the event's id, the same on every retry,
so a receiver can drop duplicates (delivery is at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

from gpufleet.errors import ConfigError
from gpufleet.notify.guard import Resolved, TargetRefused, check_url

SIGNATURE_HEADER = "X-Gpufleet-Signature"
# Answers worth retrying: a timeout, throttling, the receiver's own trouble.
_RETRY_STATUS = frozenset({408, 425, 429})
_ANSWER_BYTES = 200  # of a failed answer's body, kept in the log


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    retry: bool  # worth another attempt later
    status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None  # the receiver's Retry-After, in seconds


def sign(secret: str, timestamp: int, body: str) -> str:
    """The signature header's value for body sent at timestamp."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: str, *, now: float, tolerance_s: float = 300.0
           ) -> bool:
    """Whether header signs body under secret, made within tolerance_s of now (receivers')."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected, header) and abs(now - timestamp) <= tolerance_s


def _pinned(resolved: Resolved, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL with a checked address in place of the name, the Host header, and the TLS
    server name: the connection goes where the guard looked, not to a new lookup."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(resolved.url)
    netloc = f"[{address}]:{resolved.port}" if ":" in address else f"{address}:{resolved.port}"
    host = resolved.host if parts.port is None else f"{resolved.host}:{parts.port}"
    extensions = {"sni_hostname": resolved.host} if resolved.scheme == "https" else {}
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": host}, extensions


def new_client(timeout_s: float) -> Any:
    """An httpx client for deliveries: redirects are never followed."""
    try:
        import httpx
    except ImportError:
        raise ConfigError("webhooks need httpx: pip install 'gpufleet[notify]'") from None
    return httpx.Client(timeout=timeout_s, follow_redirects=False)


def post(url: str, *, secret: str, body: str, event: str, delivery_id: str, timeout_s: float,
         allow_http: bool, allow_private: bool, client: Any = None) -> Outcome:
    """One attempt. The URL is checked again first (DNS may have changed): a refusal is
    final. Redirects are not followed; a 2xx is delivered, 408/425/429/5xx and network
    trouble are retried, any other answer fails the event."""
    try:
        resolved = check_url(url, allow_http=allow_http, allow_private=allow_private)
    except TargetRefused as exc:
        return Outcome(ok=False, retry=False, error=str(exc))
    own = client is None
    http = client or new_client(timeout_s)
    import httpx  # present: new_client made one, or the caller did

    try:
        for n, address in enumerate(resolved.addresses):  # the next if one cannot connect
            pinned, headers, extensions = _pinned(resolved, address)
            headers.update({"Content-Type": "application/json", "User-Agent": "gpufleet-notify",
                            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
                            "X-Gpufleet-Event": event, "X-Gpufleet-Delivery": delivery_id})
            try:
                # Streamed: only the first bytes of the answer are read (for the log), so a
                # receiver cannot make the dispatcher hold a large body.
                with http.stream("POST", pinned, content=body.encode(), headers=headers,
                                 extensions=extensions, follow_redirects=False) as answer:
                    said = _first_bytes(answer, _ANSWER_BYTES)
                    wait = answer.headers.get("Retry-After", "")
                break
            except httpx.ConnectError as exc:
                if n + 1 == len(resolved.addresses):
                    return Outcome(ok=False, retry=True, error=f"ConnectError: {exc}"[:500])
            except httpx.HTTPError as exc:
                return Outcome(ok=False, retry=True, error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        if own:
            http.close()
    if 200 <= answer.status_code < 300:
        return Outcome(ok=True, retry=False, status=answer.status_code)
    retry = answer.status_code >= 500 or answer.status_code in _RETRY_STATUS
    return Outcome(ok=False, retry=retry, status=answer.status_code,
                   error=f"HTTP {answer.status_code}: {said}",
                   retry_after_s=float(wait) if wait.isdigit() else None)


def _first_bytes(answer: Any, limit: int) -> str:
    kept = b""
    for chunk in answer.iter_bytes():
        kept += chunk
        if len(kept) >= limit:
            break
    return kept[:limit].decode("utf-8", "replace")
