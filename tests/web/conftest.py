"""Fixtures of the web tests: API tokens of each scope (tests/support/api.py)."""

from tests.support.api import tokens  # noqa: F401
