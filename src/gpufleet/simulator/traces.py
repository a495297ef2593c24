"""Workload traces for the simulator: when batches land, how big they are, their deadlines.

- ``single``: the ``plan`` example, one batch of 1 M items at t = 0.
- ``daily``: three batches a day of 0.5-2 M items (uniform), landing around
  02:00, 10:00 and 18:00 (± 30 min), 30-minute deadline.
- ``poisson``: batches arriving as a Poisson process (one every 2 h on
  average) over a day, 20 k-1 M items (log-uniform), 30-minute deadline.
- ``spikes``: an hourly trickle of 20-80 k items, and two spikes of three
  batches of 0.6-1.2 M landing within five minutes of each other.

Every trace is drawn from its own random stream, so with the same seed every
policy sees the same batches.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from gpufleet.errors import ConfigError

__all__ = ["TRACES", "Batch", "Trace", "make_trace"]

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    at: float  # seconds from the start of the trace
    items: int
    deadline_s: float  # relative to ``at``


@dataclass(frozen=True, slots=True)
class Trace:
    name: str
    duration_s: float
    batches: tuple[Batch, ...]

    @property
    def largest(self) -> int:
        return max((b.items for b in self.batches), default=0)


def _single(rng: random.Random, deadline_s: float) -> Trace:
    return Trace("single", 3 * 3600.0, (Batch("b1", 0.0, 1_000_000, deadline_s),))


def _daily(rng: random.Random, deadline_s: float) -> Trace:
    batches = tuple(
        Batch(f"b{i + 1}", hour * 3600.0 + rng.uniform(-1800.0, 1800.0),
              rng.randint(500_000, 2_000_000), deadline_s)
        for i, hour in enumerate((2, 10, 18)))
    return Trace("daily", DAY_S, batches)


def _poisson(rng: random.Random, deadline_s: float) -> Trace:
    batches: list[Batch] = []
    t = 0.0
    while True:
        t += rng.expovariate(1 / 7200.0)
        if t >= DAY_S - 3600.0:
            break
        items = round(math.exp(rng.uniform(math.log(20_000), math.log(1_000_000))))
        batches.append(Batch(f"b{len(batches) + 1}", t, items, deadline_s))
    return Trace("poisson", DAY_S, tuple(batches))


def _spikes(rng: random.Random, deadline_s: float) -> Trace:
    batches: list[Batch] = []
    for hour in range(0, 23):
        batches.append(Batch("", hour * 3600.0 + rng.uniform(0, 600.0),
                             rng.randint(20_000, 80_000), deadline_s))
    for centre in (7.5 * 3600.0, 16.25 * 3600.0):
        for _ in range(3):
            batches.append(Batch("", centre + rng.uniform(0, 300.0),
                                 rng.randint(600_000, 1_200_000), deadline_s))
    batches.sort(key=lambda b: b.at)
    return Trace("spikes", DAY_S, tuple(
        Batch(f"b{i + 1}", b.at, b.items, b.deadline_s) for i, b in enumerate(batches)))


TRACES: dict[str, Callable[[random.Random, float], Trace]] = {
    "single": _single, "daily": _daily, "poisson": _poisson, "spikes": _spikes}


def make_trace(name: str, *, seed: int = 0, deadline_s: float = 1800.0) -> Trace:
    """The named trace drawn with this seed."""
    try:
        build = TRACES[name]
    except KeyError:
        raise ConfigError(f"unknown trace {name!r}; known: {', '.join(TRACES)}") from None
    return build(random.Random(f"trace-{name}-{seed}"), deadline_s)
