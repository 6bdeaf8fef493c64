"""Reaching the real services tests use, or skipping (failing in CI) with a clear reason."""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("NEWSLETTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def required() -> bool:
    return os.environ.get("NEWSLETTER_REQUIRE_SERVICES") == "1"


def unavailable(what: str, why: object) -> None:
    """Fail when services are required (CI), otherwise skip saying what was missing."""
    message = f"{what} is not reachable ({why}); start it or unset NEWSLETTER_REQUIRE_SERVICES"
    if required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
