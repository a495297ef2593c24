"""A client for the gpufleet API (httpx), giving back the same objects the index does.

The CLI's submit, status and results use it when ``--api URL`` or
``GPUFLEET_API`` is set, so their output is the same either way. Errors come
back as gpufleet errors carrying the server's one-line reason; 429 answers
are retried after their Retry-After (and up to half as long again, at random,
so that clients refused together do not come back together).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any
from urllib.parse import quote

from gpufleet.domain import Counts, Item, Job, JobUsage
from gpufleet.errors import (
    ConfigError,
    GpufleetError,
    JobFinished,
    JobNotFound,
    ManifestError,
    Unavailable,
)

_RETRIES_ON_429 = 5


class ApiUnavailable(Unavailable):
    """The API could not be reached, or answered 5xx."""


def job_from_view(view: dict[str, Any]) -> Job:
    """The Job a view describes (the same object Index.job returns)."""
    usage = view.get("usage") or {}
    known = {f.name for f in fields(JobUsage)}
    extra = {f.name: view[f.name] for f in fields(Job)
             if f.name in view and f.name not in ("id", "counts", "usage", "cancelled")}
    return Job(id=view["job"], counts=Counts(total=view["total"], done=view["done"],
                                             failed=view["failed"],
                                             cancelled=view.get("cancelled", 0),
                                             skipped=view.get("skipped", 0)),
               cancelled=view["state"] == "cancelled",
               usage=JobUsage(**{k: v for k, v in usage.items() if k in known}), **extra)


class ApiClient:
    def __init__(self, base_url: str, key: str, *, timeout_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, transport: Any = None) -> None:
        try:
            import httpx
        except ImportError:
            raise ConfigError("talking to the API needs httpx: pip install httpx") from None
        if not key:
            raise ConfigError("set GPUFLEET_API_KEY to an API key (gpufleet keys create)")
        self._httpx = httpx
        self.base_url = base_url.rstrip("/")
        self.sleep = sleep
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport,
                                 headers={"Authorization": f"Bearer {key}"})

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        for _ in range(_RETRIES_ON_429):
            try:
                response = self.http.request(method, path, **kwargs)
            except self._httpx.HTTPError as exc:
                raise ApiUnavailable(f"cannot reach the API at {self.base_url}: {exc}") from exc
            if response.status_code != 429:
                break
            after = float(response.headers.get("Retry-After", "1"))
            self.sleep(random.uniform(after, 1.5 * after))
        if response.status_code < 400:
            return response.json()
        try:
            detail = str(response.json()["detail"])
        except (ValueError, KeyError, TypeError):
            detail = response.text[:200] or response.reason_phrase
        error = {404: JobNotFound, 409: JobFinished, 422: ManifestError}.get(
            response.status_code, GpufleetError)
        if response.status_code >= 500:
            error = ApiUnavailable
        raise error(f"API {response.status_code}: {detail}")

    def submit(self, body: dict[str, Any]) -> Job:
        return job_from_view(self.request("POST", "/v1/jobs", json=body))

    def job(self, job_id: str) -> Job:
        return job_from_view(self.request("GET", f"/v1/jobs/{quote(job_id, safe='')}"))

    def cancel_job(self, job_id: str) -> Job:
        return job_from_view(self.request("DELETE", f"/v1/jobs/{quote(job_id, safe='')}"))

    def jobs(self) -> list[Job]:
        """Every job of the key's tenant, oldest first (as Index.jobs)."""
        found: list[Job] = []
        cursor: str | None = None
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = self.request("GET", "/v1/jobs", params=params)
            found += [job_from_view(v) for v in page["jobs"]]
            cursor = page["next"]
            if not cursor:
                return found[::-1]

    def iter_results(self, job_id: str, *, tag: str | None = None) -> Iterator[Item]:
        """Every item of a job in key order; JobNotFound at once (not at the first row)."""
        path = f"/v1/jobs/{quote(job_id, safe='')}/items"
        params: dict[str, Any] = {"limit": 1000, **({"tag": tag} if tag else {})}
        page = self.request("GET", path, params=params)

        def rows() -> Iterator[Item]:
            current = page
            while True:
                yield from map(Item.from_json, current["items"])
                if not current["next"]:
                    return
                current = self.request("GET", path, params={**params,
                                                            "cursor": current["next"]})

        return rows()
