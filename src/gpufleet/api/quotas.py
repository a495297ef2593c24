"""Per-tenant limits on open work, so one tenant cannot take the service from the others.

A job is open from its creation until it has no pending item or is cancelled.
Each distinct model spec is a queue (and on SQS two), so a tenant's open jobs
may name at most ``GPUFLEET_API_MAX_MODELS`` distinct specs. Over a limit,
a submission is refused with 429 and the reason; it may be retried once some
of the tenant's jobs end.

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

from gpufleet.api.tenant import TenantView
from gpufleet.errors import GpufleetError


class QuotaExceeded(GpufleetError):
    """A tenant's limit on open work is reached (429)."""


@dataclass(frozen=True, kw_only=True)
class Limits:
    max_models: int  # distinct model specs among a tenant's open jobs


@dataclass(frozen=True, eq=False)
class _Claim:
    model: str


class Quotas:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._claims: defaultdict[str, list[_Claim]] = defaultdict(list)
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._lock = threading.Lock()  # guards the two dicts themselves

    @contextmanager
    def claim(self, tenant: TenantView, *, model: str) -> Iterator[None]:
        """Hold room for one job of tenant's while it is created; QuotaExceeded if none."""
        claim = _Claim(model)
        with self._tenant_lock(tenant.tenant):
            open_models = {job.model for job in tenant.open_jobs()}
            open_models |= {c.model for c in self._claims[tenant.tenant]}
            if model not in open_models and len(open_models) >= self.limits.max_models:
                raise QuotaExceeded(
                    f"your open jobs already use {len(open_models)} distinct model specs, the "
                    f"limit (GPUFLEET_API_MAX_MODELS); use one of them or wait for those "
                    "jobs to end")
            self._claims[tenant.tenant].append(claim)
        try:
            yield
        finally:
            with self._tenant_lock(tenant.tenant):
                self._claims[tenant.tenant].remove(claim)

    def _tenant_lock(self, tenant: str) -> threading.Lock:
        with self._lock:
            return self._locks[tenant]
