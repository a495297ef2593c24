"""Every retry is jittered: the task backoff, and the waits of the other retry loops."""

from __future__ import annotations

import random

import pytest

from gpufleet.jitter import equal_jitter
from gpufleet.queue import Backoff


@pytest.fixture(autouse=True)
def seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gpufleet.jitter.random", random.Random(3))  # the same draws each run


def test_equal_jitter_keeps_half_and_draws_the_other_half() -> None:
    draws = [equal_jitter(10.0) for _ in range(1000)]
    assert all(5.0 <= d <= 10.0 for d in draws)
    # Spread over the whole upper half, not bunched
    assert min(draws) < 5.1 and max(draws) > 9.9
    assert equal_jitter(0.0) == 0.0


def test_the_backoff_doubles_its_ceiling_and_draws_below_it() -> None:
    backoff = Backoff(base_s=2.0, max_s=300.0)
    assert [backoff.ceiling_s(r) for r in (1, 2, 3, 4, 9, 20)] == [2, 4, 8, 16, 300, 300]
    for receives in (1, 3, 9):
        ceiling = backoff.ceiling_s(receives)
        delays = [backoff.delay_s(receives) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        # Tasks that failed together, at the same receive count, come back at different times
        assert len(set(delays)) == len(delays)


def test_a_backoff_without_jitter_is_its_ceiling() -> None:
    backoff = Backoff(base_s=2.0, max_s=300.0, jitter=False)
    assert [backoff.delay_s(r) for r in (1, 2, 3)] == [2, 4, 8]
