"""Notification targets: a webhook URL or an SNS topic ARN, for one job or a whole tenant.

A webhook gets a secret when it is registered, shown once; it stays in the
index because every delivery is signed with it (``webhook.sign``). A tenant's
target hears of the tenant's jobs created from its registration on; a job's
target hears of that job only.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from gpufleet.config import NotifySettings
from gpufleet.errors import ConfigError, GpufleetError
from gpufleet.index import Index
from gpufleet.index.schema import notify_targets
from gpufleet.notify.guard import check_url

EVENTS = ("created", "finished", "progress")
DEFAULT_EVENTS = ("created", "finished")
# arn:aws:sns:region:account:name (also aws-cn, aws-us-gov partitions)
_SNS_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")


class TargetNotFound(GpufleetError):
    """No such target (for this tenant)."""


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    tenant: str
    job_id: str | None
    kind: str  # webhook, sns
    address: str
    events: tuple[str, ...]
    progress_s: float | None
    created_at: float
    secret: str | None = None  # a webhook's: never shown after registration

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "tenant": self.tenant, "job": self.job_id, "kind": self.kind,
                "address": self.address, "events": list(self.events),
                "progress_s": self.progress_s, "created_at": self.created_at}


def parse_events(text: str | None, progress_s: float | None) -> tuple[str, ...]:
    names = [e.strip() for e in (text or "").split(",") if e.strip()]
    events = tuple(dict.fromkeys(names)) or DEFAULT_EVENTS
    if progress_s is not None and "progress" not in events:
        events += ("progress",)
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise ConfigError(f"events must be some of {', '.join(EVENTS)}, not {text!r}")
    if "progress" in events and (progress_s is None or progress_s < 1):
        raise ConfigError("progress events need an interval of at least 1 s "
                          "(--progress-every, progress_s)")
    return events


def kind_of(address: str, settings: NotifySettings) -> str:
    """webhook or sns, after checking the address (TargetRefused for a forbidden URL)."""
    if address.startswith("arn:"):
        if not _SNS_ARN.fullmatch(address):
            raise ConfigError(f"{address!r} is not an SNS topic ARN "
                              "(arn:aws:sns:REGION:ACCOUNT:TOPIC)")
        return "sns"
    check_url(address, allow_http=bool(settings.allow_http),
              allow_private=bool(settings.allow_private))
    return "webhook"


class TargetStore:
    def __init__(self, index: Index, settings: NotifySettings) -> None:
        self.index, self.settings = index, settings

    def add(self, address: str, *, tenant: str, job_id: str | None = None,
            events: str | None = None, progress_s: float | None = None) -> Target:
        """Register a target; a webhook's comes back with its secret (shown once)."""
        kind = kind_of(address, self.settings)
        target = Target(id=secrets.token_hex(8), tenant=tenant, job_id=job_id, kind=kind,
                        address=address, events=parse_events(events, progress_s),
                        progress_s=progress_s, created_at=self.index.clock(),
                        secret=("whsec_" + secrets.token_urlsafe(32)) if kind == "webhook"
                        else None)
        with self.index.transaction() as conn:
            conn.execute(insert(notify_targets).values(
                id=target.id, tenant=tenant, job_id=job_id, kind=kind, address=address,
                secret=target.secret, events=",".join(target.events), progress_s=progress_s,
                created_at=target.created_at))
        return target

    def listed(self, *, tenant: str | None = None) -> list[Target]:
        """Targets without their secrets."""
        return [_target(r, secret=False) for r in self._rows(tenant=tenant)]

    def signing(self) -> dict[str, Target]:
        """Every target by id, webhooks with their secrets (the dispatcher's)."""
        return {r["id"]: _target(r, secret=True) for r in self._rows()}

    def remove(self, target_id: str, *, tenant: str | None = None) -> Target:
        """Remove a target (of the tenant, when given); its undelivered events fail."""
        found = [t for t in self.listed(tenant=tenant) if t.id == target_id]
        if not found:
            raise TargetNotFound(f"no notification target {target_id!r}")
        with self.index.transaction() as conn:
            conn.execute(delete(notify_targets).where(notify_targets.c.id == target_id))
        return found[0]

    def _rows(self, *, tenant: str | None = None) -> list[Any]:
        query = select(notify_targets).order_by(notify_targets.c.created_at,
                                                notify_targets.c.id)
        if tenant is not None:
            query = query.where(notify_targets.c.tenant == tenant)
        with self.index.transaction() as conn:
            return list(conn.execute(query).mappings())


def _target(row: Any, *, secret: bool) -> Target:
    return Target(id=row["id"], tenant=row["tenant"], job_id=row["job_id"], kind=row["kind"],
                  address=row["address"], events=tuple(row["events"].split(",")),
                  progress_s=row["progress_s"], created_at=row["created_at"],
                  secret=row["secret"] if secret else None)
