"""The Tagger plugin interface: bootstrap once, infer many; and the model registry.

A model spec is a name from MODELS or a ``package.module:attr`` import path,
optionally with parameters: ``synthetic?item_ms=10&bootstrap_s=300``. The
factory is called as ``factory(settings, **params)`` with string parameters.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from gpufleet.domain import Tag
from gpufleet.errors import ConfigError, ItemError
from gpufleet.models.params import Parameter, check_parameters

if TYPE_CHECKING:
    from gpufleet.config import Settings


class Tagger(Protocol):
    """A model as the worker drives it.

    The worker gathers preprocessed items across tasks into ``batch_size`` and calls
    ``infer`` from ``streams`` threads at once (an optional attribute, 1 if absent:
    a GPU tagger sets 2 so one batch's copies overlap another's compute). A tagger may
    also take a decoded image, for jobs with a preprocessing chain (worker/inputs.py):
    ``preprocess_image(image)`` and optionally ``draft_size``; one that does not gets the
    prepared image encoded as bytes.
    """

    name: str
    batch_size: int  # the micro-batch the worker gathers across tasks

    def bootstrap(self) -> None:
        """Load weights, warm up. Called once per worker before any other method."""
        ...

    def preprocess(self, data: bytes) -> Any:
        """Decode one object into model input. Runs in parallel threads.

        Raises ImageError for an input that cannot be used.
        """
        ...

    def infer(self, batch: Sequence[Any]) -> Sequence[list[Tag] | ItemError]:
        """Tags for each input, best first; an ItemError for an input found unusable.

        Raising fails the whole batch as a transient fault (its tasks are retried).
        Raising DeviceLost says the device can run nothing more: the worker hands every
        task back and exits with an error, for its supervisor to start a new process.
        """
        ...


MODELS: dict[str, str] = {
    "efficientnet-lite0": "gpufleet.models.efficientnet:EfficientNetLite0",
    "synthetic": "gpufleet.models.synthetic:SyntheticTagger",
}


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(spec)
    # urlsplit reads "pkg.mod:attr" as scheme:path; keep the import path whole.
    name = spec.split("?", 1)[0] if parts.scheme or parts.netloc else parts.path
    query = spec.split("?", 1)[1] if "?" in spec else ""
    try:
        params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise ConfigError(f"model spec {spec!r}: parameters must be name=value&...") from None
    if not name:
        raise ConfigError(f"model spec {spec!r} has no name")
    return name, params


def model_factory(name: str) -> Any:
    """The class (or function) a model name or ``package.module:attr`` names, imported."""
    target = MODELS.get(name, name)
    if ":" not in target:
        raise ConfigError(f"unknown model {name!r}; built-in: {', '.join(MODELS)}, "
                          "or a plugin as package.module:attr")
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load model {name!r} from {target}: {exc}") from exc


def declared_parameters(factory: Any) -> Mapping[str, Parameter] | None:
    """A model's ``PARAMETERS`` declaration; None for a plugin that declares none.

    Only the class's own: a subclass that changes the constructor (a plugin built on
    SyntheticTagger, say) takes other parameters than its parent declared."""
    declared = vars(factory).get("PARAMETERS") if hasattr(factory, "__dict__") else None
    return declared if isinstance(declared, Mapping) else None


def check_spec(spec: str) -> bool:
    """Raise ConfigError (one line) unless spec names a model and its parameters are
    within the model's declaration. Returns whether the model declares its parameters
    (a plugin that does not is taken on trust)."""
    name, params = parse_spec(spec)
    declared = declared_parameters(model_factory(name))
    if declared is not None:
        check_parameters(name, params, declared)
    return declared is not None


def canonical_spec(spec: str) -> str:
    """The one spelling of a model spec, checked: parameters sorted by name, numbers written
    one way, and parameters at their default left out.

    So ``synthetic?a=1&b=2`` and ``synthetic?b=2&a=1``, or ``efficientnet-lite0`` and
    ``efficientnet-lite0?device=auto``, are one model and one queue. Defaults are left out
    rather than written in, so the common specs (and the queues named after them) keep
    the names they always had. A plugin that declares no parameters keeps its values as
    given, sorted.
    """
    check_spec(spec)
    name, params = parse_spec(spec)
    factory = model_factory(name)
    declared = declared_parameters(factory) or {}
    defaults = _constructor_defaults(factory)
    shown: dict[str, str] = {}
    for key in sorted(params):
        parameter = declared.get(key)
        value = parameter.normal(params[key]) if parameter else params[key]
        default = defaults.get(key)
        if parameter is not None and default is not None and \
                value == parameter.normal(str(default)):
            continue
        shown[key] = value
    return name + ("?" + urlencode(shown, safe=":/") if shown else "")


def _constructor_defaults(factory: Any) -> dict[str, Any]:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    return {name: p.default for name, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty}


def load_tagger(spec: str, settings: Settings) -> Tagger:
    """Build (not bootstrap) the tagger a spec names, its parameters checked first."""
    check_spec(spec)
    name, params = parse_spec(spec)
    factory = model_factory(name)
    try:
        tagger: Tagger = factory(settings, **params)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad parameters {params}: {exc}") from exc
    return tagger


def as_float(params_name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"model parameter {params_name}={value!r} is not a number") from None
