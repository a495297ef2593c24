"""Per-tenant limits on open work, so one tenant cannot take the service from the others.

A job is open from its creation until it has no pending item or is cancelled.
A tenant may have at most ``GPUFLEET_API_MAX_OPEN_JOBS`` open jobs, holding at
most ``GPUFLEET_API_MAX_OPEN_ITEMS`` items (an open job counts whole until it
ends: cheap to know, and what its submission cost). Each distinct model spec
is a queue (and on SQS two), so a tenant's open jobs may name at most
``GPUFLEET_API_MAX_MODELS`` distinct specs. Over a limit, a submission is
refused with 429 and the reason, to be retried once some of the tenant's jobs
end; a job larger than the items limit by itself is a 422.

The check and the job's creation are one step per tenant within an API
process: a submission's claim stays counted until its job is in the index,
and a tenant's claims are read under the tenant's own lock, so concurrent
submissions cannot each pass a check that only one of them should.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from gpufleet.api.tenant import OpenJob, TenantView
from gpufleet.errors import GpufleetError


class QuotaExceeded(GpufleetError):
    """A tenant's limit on open work is reached (429)."""


class OverQuota(GpufleetError):
    """A job that no tenant's quota could hold (422)."""


@dataclass(frozen=True, kw_only=True)
class Limits:
    max_models: int  # distinct model specs among a tenant's open jobs
    max_open_jobs: int
    max_open_items: int


@dataclass(frozen=True, eq=False)
class _Claim:
    model: str
    items: int


class Quotas:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._claims: defaultdict[str, list[_Claim]] = defaultdict(list)
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._lock = threading.Lock()  # guards the two dicts themselves

    @contextmanager
    def claim(self, tenant: TenantView, *, model: str, items: int) -> Iterator[None]:
        """Hold room for one job of tenant's while it is created; QuotaExceeded if none."""
        if items > self.limits.max_open_items:
            raise OverQuota(f"{items:,} items: over the {self.limits.max_open_items:,} a tenant "
                            "may have open (GPUFLEET_API_MAX_OPEN_ITEMS)")
        claim = _Claim(model, items)
        with self._tenant_lock(tenant.tenant):
            claims = self._claims[tenant.tenant]
            self._check(tenant.open_jobs(), claims, claim)
            claims.append(claim)
        try:
            yield
        finally:
            with self._tenant_lock(tenant.tenant):
                self._claims[tenant.tenant].remove(claim)

    def _check(self, open_jobs: list[OpenJob], claims: list[_Claim], new: _Claim) -> None:
        limits = self.limits
        n_jobs = len(open_jobs) + len(claims)
        if n_jobs >= limits.max_open_jobs:
            raise QuotaExceeded(f"you have {n_jobs:,} open jobs, the limit "
                                "(GPUFLEET_API_MAX_OPEN_JOBS); wait for some to end")
        n_items = sum(j.total for j in open_jobs) + sum(c.items for c in claims)
        if n_items + new.items > limits.max_open_items:
            raise QuotaExceeded(f"your open jobs hold {n_items:,} items; {new.items:,} more is "
                                f"over the limit of {limits.max_open_items:,} "
                                "(GPUFLEET_API_MAX_OPEN_ITEMS); wait for some to end")
        models = {j.model for j in open_jobs} | {c.model for c in claims}
        if new.model not in models and len(models) >= limits.max_models:
            raise QuotaExceeded(
                f"your open jobs already use {len(models)} distinct model specs, the limit "
                "(GPUFLEET_API_MAX_MODELS); use one of them or wait for those jobs to end")

    def _tenant_lock(self, tenant: str) -> threading.Lock:
        with self._lock:
            return self._locks[tenant]
