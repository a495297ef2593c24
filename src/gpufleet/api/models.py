"""Which model specs the API accepts: ``GPUFLEET_API_MODELS``, checked against declarations.

Each entry is a model name or a whole spec. A name admits that model with any
parameters within its declaration (``models/params.py``); a spec admits
exactly that spec. A model that declares no parameters (a plugin) is admitted
only as an exact entry, its bare name meaning "no parameters": the API never
imports code or passes parameters a tenant chose and the operator did not.
Empty: the built-in models, by name.
"""

from __future__ import annotations

from gpufleet.errors import ConfigError
from gpufleet.models.base import MODELS, canonical_spec, check_spec, parse_spec


class ModelPolicy:
    def __init__(self, setting: str) -> None:
        entries = [e.strip() for e in setting.split(",") if e.strip()] or list(MODELS)
        self.names: set[str] = set()  # any parameters within the declaration
        self.specs: set[str] = set()  # exactly these
        for entry in entries:
            try:
                declared = check_spec(entry)
                spec = canonical_spec(entry)
            except ConfigError as exc:
                raise ConfigError(f"GPUFLEET_API_MODELS: {exc}") from None
            if "?" not in entry and declared:
                self.names.add(entry)
            else:
                self.specs.add(spec)

    def check(self, spec: str) -> str:
        """spec in its canonical form (``canonical_spec``), or ConfigError (a 422) unless the
        operator admits spec and its parameters are valid."""
        name, _ = parse_spec(spec)
        if name not in self.names and (canonical := canonical_spec(spec)) in self.specs:
            return canonical
        if name not in self.names:
            admitted = ", ".join(sorted(self.names | self.specs))
            raise ConfigError(f"model {spec[:200]!r}: not accepted here (accepted: {admitted}; "
                              "a name takes any parameters within the model's ranges)")
        return canonical_spec(spec)

    def fixed_specs(self) -> list[str]:
        """The exact specs the operator listed: models whose queues /metrics may show."""
        return sorted(self.specs)
