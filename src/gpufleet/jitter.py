"""Jitter for every retry, so that what failed together does not retry together.

Workers that lost the same store, queue or index at the same moment would
otherwise come back in lockstep and fail again together. Every wait before a
retry is drawn with *equal jitter* (AWS Architecture Blog, "Exponential
Backoff and Jitter"): half of it is kept, the other half is random, so a retry
never comes sooner than half the intended wait and never later than all of it.
"""

from __future__ import annotations

import random


def equal_jitter(delay_s: float) -> float:
    """A random wait in [delay_s / 2, delay_s]."""
    half = delay_s / 2.0
    return half + random.uniform(0.0, half)
