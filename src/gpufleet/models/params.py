"""What parameters a model takes: a declaration per model class, and its check.

A model class declares ``PARAMETERS: Mapping[str, Parameter]``; a spec's
parameters are checked against it before the model is built, so
``synthetic?item_ms=-5`` or ``efficientnet-lite0?device=cuda:99`` is one clear
error, not a job that waits forever for a worker that cannot serve it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from gpufleet.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Parameter:
    """One parameter: an int, a float (both within [low, high]) or a str matching pattern."""

    kind: type[int] | type[float] | type[str]
    low: float | None = None
    high: float | None = None
    pattern: str | None = None  # a str parameter's allowed values, as a full-match regex
    shown: str = ""  # the allowed values in words, for the error (default: the range)

    def check(self, name: str, value: str) -> None:
        if self.kind is str:
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise ConfigError(f"{name}={value!r}: expected {self.shown or self.pattern}")
            return
        try:
            number = int(value) if self.kind is int else float(value)
        except ValueError:
            noun = "an integer" if self.kind is int else "a number"
            raise ConfigError(f"{name}={value[:40]!r}: expected {noun}") from None
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        if not low <= number <= high:  # NaN fails this too
            raise ConfigError(f"{name}={value}: expected {self.shown or _range(low, high)}")


    def normal(self, value: str) -> str:
        """value written one way: 10, 10.0 and 1e1 are all "10" (a valid value assumed)."""
        if self.kind is str:
            return value
        try:
            number = float(value)
        except ValueError:
            return value
        return str(int(number)) if number.is_integer() else repr(number)


def check_parameters(model: str, params: Mapping[str, str],
                     declared: Mapping[str, Parameter]) -> None:
    """Each of params is declared and within its range, or ConfigError naming the first."""
    for name, value in params.items():
        parameter = declared.get(name)
        try:
            if parameter is None:
                takes = ", ".join(declared) or "no parameters"
                raise ConfigError(f"unknown parameter {name!r} (it takes {takes})")
            parameter.check(name, value)
        except ConfigError as exc:
            raise ConfigError(f"model {model!r}: {exc}") from None


def _range(low: float, high: float) -> str:
    def shown(x: float) -> str:
        return f"{x:g}"
    if math.isinf(low):
        return f"at most {shown(high)}"
    if math.isinf(high):
        return f"at least {shown(low)}"
    return f"{shown(low)} to {shown(high)}"
