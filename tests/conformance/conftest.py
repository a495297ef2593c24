"""Fixtures of the queue conformance suite (servers it needs beyond tests/servers.py)."""

from tests.conformance.backends import in_process_moto  # noqa: F401
