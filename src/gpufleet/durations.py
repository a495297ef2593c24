"""Durations as people write them: ``90``, ``90s``, ``30m``, ``1.5h``, ``1h30m``, ``2d``."""

from __future__ import annotations

import math
import re

from gpufleet.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Seconds in text: a plain number is seconds; units ms, s, m, h, d may be combined."""
    spec = text.strip().lower().replace(" ", "")
    try:
        seconds = float(spec)
    except ValueError:
        parts = _PART.findall(spec)
        if not parts or "".join(n + u for n, u in parts) != spec:
            raise ConfigError(f"{what} {text!r} is not a duration like 90s, 30m, 1h30m"
                              ) from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{what} {text!r} must be zero or more seconds")
    return seconds
