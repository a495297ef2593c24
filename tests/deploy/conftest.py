"""Fixtures of the deploy tests: moto's Auto Scaling group, as the conformance suite makes it."""

from tests.conformance.conftest import aws, group  # noqa: F401
