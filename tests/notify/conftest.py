"""An index with a clock the test moves, and a dispatcher on it, for the notification tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from gpufleet.config import Settings
from gpufleet.domain import ItemResult, ItemStatus
from gpufleet.index import Index
from gpufleet.notify.dispatcher import Dispatcher
from gpufleet.notify.targets import TargetStore
from tests.conftest import Home


class Clock:
    """Wall time that moves only when the test says."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Notifying:
    settings: Settings
    index: Index
    clock: Clock
    targets: TargetStore
    made: list[Dispatcher] = field(default_factory=list)

    def dispatcher(self) -> Dispatcher:
        # The longest wait full jitter can draw: the test knows when a retry is due.
        made = Dispatcher(self.settings, self.index, uniform=lambda _low, high: high)
        self.made.append(made)
        return made

    def job(self, job_id: str, *, items: int = 2, tenant: str = "a") -> str:
        self.clock.advance(1)
        self.index.create_job(job_id, model="synthetic", input="file:///in/",
                              output="file:///out/", keys=[f"k{i}" for i in range(items)],
                              tenant=tenant)
        return job_id

    def finish(self, job_id: str, keys: list[str], status: ItemStatus = ItemStatus.DONE
               ) -> None:
        self.index.record([ItemResult(job=job_id, key=k, status=status,
                                      error=None if status is ItemStatus.DONE else "broken")
                           for k in keys])


@pytest.fixture
def notifying(home: Home) -> Iterator[Notifying]:
    # The receivers here listen on 127.0.0.1 over http: lifted for these tests only.
    home.env.update(GPUFLEET_NOTIFY_ALLOW_HTTP="1", GPUFLEET_NOTIFY_ALLOW_PRIVATE="1",
                    GPUFLEET_NOTIFY_BACKOFF_BASE_S="5", GPUFLEET_NOTIFY_MAX_ATTEMPTS="4",
                    GPUFLEET_NOTIFY_TIMEOUT_S="5")
    settings = home.settings
    clock = Clock()
    index = Index(settings.db, clock=clock)
    notifying = Notifying(settings, index, clock, TargetStore(index, settings.notify))
    yield notifying
    for dispatcher in notifying.made:
        dispatcher.close()
    index.close()
