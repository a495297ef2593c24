"""API keys: 32 random bytes shown once, stored only as a SHA-256 with a short lookup id.

A key reads ``gfk_<id>_<secret>``: the id (12 hex digits) is public and finds
the row; the SHA-256 of the whole key is compared in constant time. The index
never holds a key, only its id and its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update

from gpufleet.errors import ConfigError, GpufleetError
from gpufleet.index import Index
from gpufleet.index.schema import api_keys

SCOPES = ("submit", "read", "admin")
_KEY = re.compile(r"gfk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Compared against when no row matches, so an unknown id costs the same as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the key's id, its tenant and what it may do."""

    key_id: str
    tenant: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    tenant: str
    scopes: tuple[str, ...]
    created_at: float
    revoked_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "tenant": self.tenant, "scopes": list(self.scopes),
                "created_at": self.created_at, "revoked_at": self.revoked_at}


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    names = text.split(",") if isinstance(text, str) else list(text)
    scopes = tuple(dict.fromkeys(s.strip() for s in names if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ConfigError(f"scopes must be some of {', '.join(SCOPES)}, not {text!r}")
    return scopes


def check_tenant(tenant: str) -> str:
    if not _TENANT.fullmatch(tenant):
        raise ConfigError(f"tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return tenant


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class KeyStore:
    """API keys in the index's ``api_keys`` table.

    cache_s: how long a key that authenticated is believed without asking the index
    again (the API uses 1 s: a revoked key is refused within a second).
    """

    def __init__(self, index: Index, *, clock: Callable[[], float] = time.time,
                 cache_s: float = 0.0) -> None:
        self.index = index
        self.clock = clock
        self.cache_s = cache_s
        self._believed: dict[str, tuple[float, Principal]] = {}  # digest -> (until, who)
        self._active: dict[str, float] = {}  # key id -> until when it is believed active

    def create(self, *, tenant: str, scopes: str | Iterable[str]) -> tuple[KeyRecord, str]:
        """A new key: its record, and the key itself (shown once, never stored)."""
        record = KeyRecord(id=secrets.token_hex(6), tenant=check_tenant(tenant),
                           scopes=parse_scopes(scopes), created_at=self.clock(), revoked_at=None)
        raw = f"gfk_{record.id}_{secrets.token_urlsafe(32)}"
        with self.index.transaction() as conn:
            conn.execute(insert(api_keys).values(
                id=record.id, hash=_digest(raw), tenant=record.tenant,
                scopes=",".join(record.scopes), created_at=record.created_at))
        return record, raw

    def list(self) -> list[KeyRecord]:
        with self.index.transaction() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).mappings()
            return [_record(r) for r in rows]

    def revoke(self, key_id: str) -> KeyRecord:
        with self.index.transaction() as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == key_id,
                                                api_keys.c.revoked_at.is_(None))
                         .values(revoked_at=self.clock()))
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        if row is None:
            raise GpufleetError(f"no API key {key_id!r}; see gpufleet keys list")
        return _record(row)

    def authenticate(self, raw: str) -> Principal | None:
        """The key's principal, or None if it is malformed, unknown, wrong or revoked."""
        match = _KEY.fullmatch(raw)
        if match is None:
            return None
        digest = _digest(raw)
        believed = self._believed.get(digest)
        if believed is not None and believed[0] > self.clock():
            return believed[1]
        with self.index.transaction() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == match.group(1))
                               ).mappings().first()
        stored = row["hash"] if row is not None else _DUMMY_HASH
        if not hmac.compare_digest(stored, digest) or row is None or row["revoked_at"]:
            return None
        found = Principal(key_id=row["id"], tenant=row["tenant"],
                          scopes=frozenset(row["scopes"].split(",")))
        if self.cache_s > 0:
            if len(self._believed) > 10_000:
                self._believed.clear()
            self._believed[digest] = (self.clock() + self.cache_s, found)
        return found


    def active(self, key_id: str) -> bool:
        """Whether the key key_id exists and is not revoked (believed for cache_s, as
        ``authenticate`` does): a signed URL lives no longer than the key that asked for it."""
        believed = self._active.get(key_id)
        if believed is not None and believed > self.clock():
            return True
        with self.index.transaction() as conn:
            row = conn.execute(select(api_keys.c.revoked_at).where(api_keys.c.id == key_id)
                               ).first()
        if row is None or row.revoked_at is not None:
            return False
        if self.cache_s > 0:
            if len(self._active) > 10_000:
                self._active.clear()
            self._active[key_id] = self.clock() + self.cache_s
        return True


def _record(row: Any) -> KeyRecord:
    return KeyRecord(id=row["id"], tenant=row["tenant"], scopes=tuple(row["scopes"].split(",")),
                     created_at=row["created_at"], revoked_at=row["revoked_at"])
