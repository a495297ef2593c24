"""JSON from untrusted text: nesting bounded before the parser recurses, numbers checked.

Python's parser recurses once per level (a document 100,000 deep raises
RecursionError) and refuses integers over 4,300 digits with a bare
ValueError; it accepts NaN and Infinity. ``loads`` refuses all of these with
``JsonRefused`` (a ValueError) and one line saying why, before parsing when
it can: the depth is measured on the brackets left once strings are taken
out, by C-speed string operations (no Python loop per character).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
MAX_DIGITS = 30  # far beyond any count, priority or time this project reads
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JsonRefused(ValueError):
    """JSON that is too deeply nested or holds a number out of range."""


def depth_problem(text: str, *, max_depth: int = MAX_DEPTH) -> str | None:
    """Why text nests deeper than max_depth (or is unbalanced), or None."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for level in range(max_depth):
        if not brackets:
            return None
        shorter = brackets.replace("[]", "").replace("{}", "")
        if shorter == brackets:  # unbalanced: the parser says where, if it cannot go deep
            openers = brackets.count("[") + brackets.count("{")
            return None if level + openers <= max_depth else f"nested more than {max_depth} deep"
        brackets = shorter
    return f"nested more than {max_depth} deep" if brackets else None


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise JsonRefused(f"an integer of {len(text):,} digits (at most {MAX_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"a number out of range ({text[:20]})")
    return value


def _constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a number JSON allows")


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, refusing deep nesting, huge integers, NaN and infinities (JsonRefused);
    other bad JSON raises json.JSONDecodeError as usual."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8-sig")
    problem = depth_problem(text, max_depth=max_depth)
    if problem:
        raise JsonRefused(problem)
    return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
