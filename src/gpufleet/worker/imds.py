"""The EC2 instance metadata service, version 2 (session tokens), with the standard library.

``PUT /latest/api/token`` (header ``X-aws-ec2-metadata-token-ttl-seconds``)
returns a token; every ``GET /latest/meta-data/...`` carries it in
``X-aws-ec2-metadata-token``. A 404 means "no such document" (for
``spot/instance-action``: no interruption notice). The endpoint is a setting
(GPUFLEET_IMDS_URL), so tests serve it from a small local HTTP server.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from gpufleet.errors import Unavailable

_TOKEN_TTL_S = 21600
_TIMEOUT_S = 2.0


class Imds:
    def __init__(self, url: str, *, timeout_s: float = _TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._token = ""
        self._token_until = 0.0

    def _fresh_token(self) -> str:
        if self._token and time.monotonic() < self._token_until:
            return self._token
        request = urllib.request.Request(
            f"{self.url}/latest/api/token", method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(_TOKEN_TTL_S)})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                self._token = response.read().decode()
        except (OSError, ValueError) as exc:
            raise Unavailable(f"instance metadata at {self.url}: cannot get a token: {exc}"
                              ) from exc
        self._token_until = time.monotonic() + _TOKEN_TTL_S / 2
        return self._token

    def get(self, path: str) -> str | None:
        """The metadata document at path (under /latest/meta-data/), or None if there is none."""
        for attempt in (1, 2):
            request = urllib.request.Request(
                f"{self.url}/latest/meta-data/{path}",
                headers={"X-aws-ec2-metadata-token": self._fresh_token()})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return str(response.read().decode())
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code == 401 and attempt == 1:
                    self._token = ""  # expired: fetch a new one and try once more
                    continue
                raise Unavailable(f"instance metadata {path}: HTTP {exc.code}") from exc
            except (OSError, ValueError) as exc:
                raise Unavailable(f"instance metadata {path}: {exc}") from exc
        return None
