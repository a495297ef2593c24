"""A preprocessing chain spec, parsed and checked: ``exif,min-size=64,max-size=8000,grayscale``.

Steps run in the order given, on the decoded image, before the model's own
preprocessing. A step is a built-in (steps.py), a size filter (``min-size=N``:
the shorter side at least N pixels; ``max-size=N``: the longer side at most N),
or a user step named like a model plugin, ``package.module:function``: a
function from a Pillow image to a Pillow image that may raise ItemSkipped to
leave the item out, or ImageError to fail it.

A chain is checked where it is submitted (one line of error for a bad spec) and
again on the worker, which also imports its user steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpufleet.errors import ConfigError
from gpufleet.preprocess.steps import BUILTINS, FILTERS, size_argument

MAX_SPEC_CHARS = 1000
MAX_STEPS = 32
_PLUGIN = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclass(frozen=True, slots=True)
class Step:
    name: str  # a built-in's or filter's name, or package.module:function
    arg: str | None = None

    @property
    def plugin(self) -> bool:
        return ":" in self.name

    def __str__(self) -> str:
        return self.name if self.arg is None else f"{self.name}={self.arg}"


@dataclass(frozen=True, slots=True)
class Chain:
    steps: tuple[Step, ...]

    def __str__(self) -> str:
        """The one spelling of the chain: what a result says it was made with."""
        return ",".join(str(s) for s in self.steps)

    @property
    def plugins(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps if s.plugin)

    def bound(self, name: str) -> int | None:
        """A size filter's limit: the strictest one the chain names, None if none."""
        limits = [size_argument(s.name, s.arg) for s in self.steps if s.name == name]
        if not limits:
            return None
        return max(limits) if name == "min-size" else min(limits)


def parse_chain(spec: str) -> Chain:
    """The chain a spec names, every built-in's argument checked; ConfigError otherwise."""
    if len(spec) > MAX_SPEC_CHARS:
        raise ConfigError(f"preprocess chain is {len(spec):,} characters, over "
                          f"{MAX_SPEC_CHARS:,}")
    parts = [p.strip() for p in spec.split(",")]
    if not spec.strip() or not all(parts):
        raise ConfigError(f"preprocess chain {spec!r}: give steps separated by commas, "
                          "e.g. exif,min-size=64,grayscale")
    if len(parts) > MAX_STEPS:
        raise ConfigError(f"preprocess chain has {len(parts)} steps, over {MAX_STEPS}")
    return Chain(tuple(_step(part) for part in parts))


def _step(text: str) -> Step:
    name, equals, arg = text.partition("=")
    name = name.strip().lower() if ":" not in name else name.strip()
    step = Step(name, arg.strip() if equals else None)
    if step.plugin:
        if not _PLUGIN.fullmatch(name) or equals:
            raise ConfigError(f"preprocess step {text!r}: a user step is "
                              "package.module:function, with no argument")
    elif name in FILTERS:
        size_argument(name, step.arg)
    elif name in BUILTINS:
        builtin = BUILTINS[name]
        if equals and not builtin.argument:
            raise ConfigError(f"preprocess step {name} takes no argument")
        builtin.make(step.arg)  # checks the argument
    else:
        raise ConfigError(f"unknown preprocess step {name!r}; built-in: "
                          f"{', '.join([*BUILTINS, *FILTERS])}, or package.module:function")
    return step


def canonical_chain(spec: str | None) -> str | None:
    """A spec as stored and sent to workers: checked and spelled one way; None for none."""
    if spec is None or not spec.strip():
        return None
    return str(parse_chain(spec))
