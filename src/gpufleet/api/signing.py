"""HMAC-signed, expiring download URLs for result objects on the local store.

A URL names a tenant, the id of the API key that asked for it, a job, an
item key and an expiry time (Unix seconds); its signature is HMAC-SHA256 over
all five with the installation's signing key. Changing any part, using it
after it expires, or once its key is revoked, gets 403. (On S3 the store
presigns instead; see ``downloads.py``.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from gpufleet.config import Settings
from gpufleet.errors import ConfigError

MAX_TTL_S = 7 * 24 * 3600
KEY_FILE = "api-signing.key"


class SignatureError(Exception):
    """A signed URL is altered, malformed or expired (the API answers 403)."""


_DOMAINS = {"download": "gpufleet-download-v2", "thumbnail": "gpufleet-thumbnail-v1"}


class Signer:
    def __init__(self, secret: bytes, *, ttl_s: float, clock: Callable[[], float] = time.time
                 ) -> None:
        if len(secret) < 16:
            raise ConfigError("the API signing key must be at least 16 bytes")
        if not 0 < ttl_s <= MAX_TTL_S:
            raise ConfigError(f"GPUFLEET_API_URL_TTL_S must be between 1 and {MAX_TTL_S} "
                              f"(7 days), not {ttl_s:g}")
        self._secret = secret
        self.ttl_s = ttl_s
        self.clock = clock

    def sign(self, tenant: str, key_id: str, job: str, key: str, *,
             purpose: str = "download") -> dict[str, str]:
        """The query parameters that make the download path for (tenant, job, key) valid,
        for as long as the API key key_id is. A URL signed for one purpose (the result
        object, the input's thumbnail) does not verify for another."""
        expires = str(int(self.clock() + self.ttl_s))
        return {"tenant": tenant, "kid": key_id, "expires": expires,
                "signature": self._mac(tenant, key_id, job, key, expires, purpose)}

    def verify(self, *, tenant: str, key_id: str, job: str, key: str, expires: str,
               signature: str, purpose: str = "download") -> None:
        """Return if the parameters were signed by us and have not expired; else raise.
        (Whether key_id is still valid is the caller's to ask.)"""
        given = signature.encode("utf-8", "surrogateescape")
        mac = self._mac(tenant, key_id, job, key, expires, purpose)
        if not hmac.compare_digest(mac.encode(), given):
            raise SignatureError("invalid signature")
        if not expires.isdigit() or int(expires) < self.clock():
            raise SignatureError("this URL has expired")

    def _mac(self, tenant: str, key_id: str, job: str, key: str, expires: str,
             purpose: str) -> str:
        # NUL cannot occur in a tenant, key id, job id or object key, so the fields cannot
        # run together. v2: the key id is signed too (v1 URLs no longer verify). The
        # purpose is the first field, so a download URL never opens a thumbnail, nor back.
        message = "\0".join((_DOMAINS[purpose], tenant, key_id, job, key, expires)).encode(
            "utf-8", "surrogateescape")
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signing_secret(settings: Settings) -> bytes:
    """GPUFLEET_API_SIGNING_KEY, else a random key kept (mode 0600) in $GPUFLEET_HOME."""
    if settings.server.signing_key:
        return settings.server.signing_key.encode()
    path = settings.home / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another API process made it first
        return _read_key(path)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    for _ in range(50):  # a concurrent creator may not have written it yet
        text = path.read_text().strip()
        if text:
            return text.encode()
        time.sleep(0.01)
    raise ConfigError(f"{path} is empty: delete it, or set GPUFLEET_API_SIGNING_KEY")
