"""``make``: a troposphere resource from plain dicts, checked against its property types.

troposphere's own ``from_dict`` refuses an intrinsic function (``If``, ``Ref``) where a
list or a property object is expected, which a template with conditions needs all the
time; ``make`` converts nested dicts the same way and lets intrinsic functions through.
Unknown property names are still an error, so a typo never reaches CloudFormation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from troposphere import AWSHelperFn, BaseAWSObject, is_aws_object_subclass

T = TypeVar("T", bound=BaseAWSObject)


def make(cls: type[T], title: str, props: Mapping[str, Any], **attributes: Any) -> T:
    """The resource title of type cls; attributes: Condition, DependsOn, DeletionPolicy..."""
    resource = _convert(cls, props, title)
    for name, value in attributes.items():
        setattr(resource, name, value)
    return resource


def _convert(cls: type[T], props: Mapping[str, Any], title: str | None = None) -> T:
    converted = {}
    for name, value in props.items():
        if name not in cls.props:
            raise AttributeError(f"{cls.__name__} has no property {name}")
        converted[name] = _value(cls.props[name][0], value)
    made: T = cls(title, **converted) if title else cls(**converted)
    return made


def _value(kind: Any, value: Any) -> Any:
    if isinstance(value, AWSHelperFn):
        return value
    if isinstance(kind, list):
        return [_value(kind[0], v) for v in value] if isinstance(value, list) else value
    if isinstance(kind, type) and is_aws_object_subclass(kind) and isinstance(value, Mapping):
        return _convert(kind, value)
    return value
