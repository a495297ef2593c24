"""What the fleet needs from a worker: who launched it, what it costs, how it spends its time.

- ``identify``: the provider's id for this worker (GPUFLEET_INSTANCE, set by
  the local provider; on EC2 the instance id from the metadata service) and
  its capacity type (GPUFLEET_CAPACITY; on EC2 ``instance-life-cycle``), hence
  its price per hour from the configured prices.
- ``UsageMeter``: wall-clock seconds busy (work in flight, or draining) and
  idle (ready, no work), and since when it is in its current state: the
  controller reads an idle worker's cool-down from it, the index a job's cost.
- ``complete_lifecycle_action``: on EC2, tell the Auto Scaling group the
  instance has drained, so its termination goes on at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpufleet import aws
from gpufleet.config import FleetSettings
from gpufleet.domain import WorkerState
from gpufleet.errors import ConfigError, Unavailable
from gpufleet.worker.imds import Imds

log = logging.getLogger(__name__)
CAPACITIES = ("spot", "on-demand")


@dataclass(frozen=True, slots=True)
class Identity:
    instance: str | None
    capacity: str
    price_per_h: float

    def columns(self) -> dict[str, Any]:
        return {"instance": self.instance, "capacity": self.capacity,
                "price_per_h": self.price_per_h}


def identify(fleet: FleetSettings, imds: Imds | None = None) -> Identity:
    if fleet.capacity and fleet.capacity not in CAPACITIES:
        raise ConfigError(f"GPUFLEET_CAPACITY={fleet.capacity!r}: expected spot or on-demand")
    instance, capacity = fleet.instance or None, fleet.capacity
    imds = imds or (Imds(fleet.imds_url) if fleet.imds_url else None)
    if imds is not None and (instance is None or not capacity):
        try:
            instance = instance or imds.get("instance-id")
            capacity = capacity or ("spot" if imds.get("instance-life-cycle") == "spot"
                                    else "on-demand")
        except Unavailable as exc:
            log.warning("cannot ask the instance metadata who we are: %s", exc)
    capacity = capacity or "on-demand"
    price = fleet.spot_price_per_h if capacity == "spot" else fleet.on_demand_price_per_h
    return Identity(instance, capacity, price)


class UsageMeter:
    """Time in each state, fed every state report (from the receiving and heartbeat threads)."""

    BUSY = (WorkerState.BUSY, WorkerState.DRAINING)

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.clock, self.wall = clock, wall
        self.busy_s = self.idle_s = 0.0
        self.state = ""
        self.state_since = wall()
        self._at = clock()
        self._lock = threading.Lock()

    def observe(self, state: str) -> None:
        with self._lock:
            now = self.clock()
            elapsed, self._at = now - self._at, now
            if self.state in self.BUSY:
                self.busy_s += elapsed
            elif self.state == WorkerState.READY:
                self.idle_s += elapsed
            if state != self.state:
                self.state, self.state_since = state, self.wall()

    def columns(self) -> dict[str, Any]:
        self.observe(self.state)  # bring the current state's time up to now
        return {"busy_s": round(self.busy_s, 3), "idle_s": round(self.idle_s, 3),
                "state_since": self.state_since}


def complete_lifecycle_action(fleet: FleetSettings, instance: str | None) -> bool:
    """Let the Auto Scaling group terminate this drained instance now. True if it was told."""
    if not (fleet.aws_asg and fleet.aws_lifecycle_hook and instance):
        return False
    try:
        aws.client("autoscaling").complete_lifecycle_action(
            AutoScalingGroupName=fleet.aws_asg, LifecycleHookName=fleet.aws_lifecycle_hook,
            InstanceId=instance, LifecycleActionResult="CONTINUE")
    except Exception as exc:  # the worker's last act: log it, the hook's timeout ends it anyway
        # e.g. no action pending (a spot reclaim without a hook), or the API unreachable.
        log.warning("lifecycle action for %s not completed: %s", instance, exc)
        return False
    log.info("lifecycle action completed: %s may terminate", instance)
    return True
