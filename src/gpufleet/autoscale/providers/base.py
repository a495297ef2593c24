"""The provider interface: where workers run. One module per platform, five methods each.

A provider starts and stops *machines* (a local process, an EC2 instance, a
pod); each machine runs one ``gpufleet worker`` that registers itself in the
index with the provider's id (GPUFLEET_INSTANCE, or the EC2 instance id), so
the controller joins the two. A provider keeps no state the controller needs
across a restart: ``machines()`` finds every machine it ever launched that is
still there, whoever launched it.

- ``machines()``: the live machines of this pool; ones that died are dropped
  (and so replaced by the next decision).
- ``launch(count, capacity)``: start machines of one capacity type.
- ``drain(ids)``: ask machines to stop. Never a kill: the worker stops
  receiving, finishes or releases its leases, then the machine goes away.
- ``protect(busy)``: shield busy machines from the platform's own scale-in
  (EC2 scale-in protection; a Kubernetes pod-deletion cost); the rest lose it.
- ``spot_refused()``: the platform recently refused spot capacity.

The Kubernetes provider (``kubernetes``) is one more module: pods labelled
with the pool, ``launch`` creates pods that prefer spot nodes or require
on-demand ones, ``drain`` deletes them (SIGTERM, termination grace period),
``protect`` annotates them against the node autoscalers' disruption.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gpufleet.domain import Capacity
from gpufleet.registry import Registry

if TYPE_CHECKING:
    from gpufleet.config import Settings


@dataclass(frozen=True, slots=True)
class Machine:
    id: str  # the provider's id; workers report it as their instance
    capacity: Capacity
    launched_at: float  # wall clock
    draining: bool = False  # asked to stop, or the platform is terminating it
    pending: bool = False  # the platform is still creating it: no worker can be up yet


class Provider(Protocol):
    name: str
    launch_overhead_s: float  # launch to worker process start, until measured

    def machines(self) -> list[Machine]: ...

    def launch(self, count: int, capacity: Capacity) -> list[str]:
        """Start count machines; returns the ids known at once (possibly none)."""
        ...

    def drain(self, ids: Sequence[str]) -> None: ...

    def protect(self, busy: Sequence[str]) -> None: ...

    def spot_refused(self) -> bool: ...


def pool_name(model: str) -> str:
    """A file- and tag-safe name for the pool serving one model spec."""
    readable = re.sub(r"[^A-Za-z0-9]+", "-", model).strip("-")[:40]
    return f"{readable}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"


PROVIDERS = Registry("provider", {
    "local": "gpufleet.autoscale.providers.local:LocalProvider.for_pool",
    "aws": "gpufleet.autoscale.providers.aws:AwsProvider",
    "kubernetes": "gpufleet.autoscale.providers.kubernetes:KubernetesProvider",
}, expected="local, aws or kubernetes")


def open_provider(name: str, settings: Settings, *, model: str) -> Provider:
    opener = PROVIDERS.load(name, shown=name)
    provider: Provider = opener(settings, model=model)
    return provider
