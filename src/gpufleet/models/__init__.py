"""Models that tag images: a small plugin interface and a registry."""

from gpufleet.models.base import MODELS, Tagger, load_tagger, parse_spec

__all__ = ["MODELS", "Tagger", "load_tagger", "parse_spec"]
