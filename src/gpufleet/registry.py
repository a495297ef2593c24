"""Backends named by a URL scheme, imported only when one is used.

Each kind of backend (queue, store, cache, provider, inbox) keeps one table of
``{scheme: "package.module:attr"}``, as models do. The module that defines an
interface thus never imports its implementations: a backend imports the
interface, never the other way round, and an optional backend's libraries
(boto3, redis) load only when a URL asks for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from gpufleet.errors import ConfigError


class Registry:
    """One kind of backend: a scheme names an attribute of a module, loaded on demand."""

    def __init__(self, kind: str, entries: Mapping[str, str], *, expected: str) -> None:
        self.kind, self.entries, self.expected = kind, dict(entries), expected

    def load(self, scheme: str, *, shown: str) -> Any:
        """What scheme names (a class, a function), or ConfigError naming `shown`."""
        target = self.entries.get(scheme)
        if target is None:
            raise ConfigError(f"unsupported {self.kind} {shown!r}: expected {self.expected}")
        return load_attribute(target)

    @property
    def schemes(self) -> tuple[str, ...]:
        return tuple(self.entries)


def load_attribute(target: str) -> Any:
    """Import ``package.module:attr`` (attr may be dotted: ``Class.method``)."""
    module_name, _, path = target.partition(":")
    found: Any = importlib.import_module(module_name)
    for name in path.split("."):
        found = getattr(found, name)
    return found
