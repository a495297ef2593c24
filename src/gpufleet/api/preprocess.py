"""Which preprocessing steps a tenant may name: ``GPUFLEET_API_PREPROCESS_STEPS``.

A user step (``package.module:function``) is code that runs on the workers, so
a tenant may name one only if the operator listed it. The setting lists the
steps admitted, comma-separated: built-in names (``exif``, ``min-size``...),
user steps, and ``builtin`` for every built-in. Empty: every built-in, no user
step. The API never imports a step: the workers do.
"""

from __future__ import annotations

from gpufleet.errors import ConfigError
from gpufleet.preprocess.chain import parse_chain
from gpufleet.preprocess.steps import BUILTINS, FILTERS

_EVERY_BUILTIN = "builtin"
_SETTING = "GPUFLEET_API_PREPROCESS_STEPS"


class PreprocessPolicy:
    def __init__(self, setting: str) -> None:
        entries = {e.strip() for e in setting.split(",") if e.strip()} or {_EVERY_BUILTIN}
        builtins = {*BUILTINS, *FILTERS}
        self.admitted: set[str] = set()
        for entry in entries:
            if entry == _EVERY_BUILTIN:
                self.admitted |= builtins
                continue
            if ":" in entry:  # a user step: its spelling checked, never imported here
                try:
                    parse_chain(entry)
                except ConfigError as exc:
                    raise ConfigError(f"{_SETTING}: {exc}") from None
            elif entry not in builtins:
                raise ConfigError(f"{_SETTING}: unknown step {entry!r}; expected {_EVERY_BUILTIN}"
                                  f", a built-in ({', '.join(sorted(builtins))}) or "
                                  "package.module:function")
            self.admitted.add(entry)

    def check(self, spec: str | None) -> str | None:
        """The chain in its canonical form, or ConfigError (a 422) naming a step not admitted."""
        if spec is None or not spec.strip():
            return None
        chain = parse_chain(spec)
        refused = [s.name for s in chain.steps if s.name not in self.admitted]
        if refused:
            raise ConfigError(f"preprocess step {refused[0][:200]!r} is not accepted here "
                              f"(accepted: {', '.join(sorted(self.admitted))}; user steps only "
                              f"as {_SETTING} lists them)")
        return str(chain)
