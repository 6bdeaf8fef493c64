"""Reaching the real services tests use, or skipping (failing in CI) with a clear reason."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("NEWSLETTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def required() -> bool:
    return os.environ.get("NEWSLETTER_REQUIRE_SERVICES") == "1"


# The exact commands that install the Debian packages tests run (.ci/system-packages runs
# them, and `make test` runs that as root).
INSTALL = {
    "chromium": "sudo apt-get install -y chromium",
    "postfix": "echo 'postfix postfix/main_mailer_type select No configuration' | "
    "sudo debconf-set-selections && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y postfix",
    "wrk": "sudo apt-get install -y wrk",
}


def unavailable(what: str, why: object, fix: str = "start it") -> None:
    """Fail when services are required (CI), otherwise skip saying what was missing."""
    message = f"{what} is not reachable ({why}); {fix} or unset NEWSLETTER_REQUIRE_SERVICES"
    if required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def not_installed(what: str, package: str, why: object) -> None:
    """Fail (CI) or skip because a Debian package is missing, with the command installing it."""
    message = f"{what} is not installed ({why}); install it with: {INSTALL[package]}"
    if required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_executable(what: str, package: str, *candidates: str) -> str:
    """The first of ``candidates`` (a path, or a name looked up on PATH) that can be run,
    else skip (or fail) with the command that installs ``package``."""
    for candidate in candidates:
        found = candidate if "/" in candidate else shutil.which(candidate)
        if found and os.access(found, os.X_OK):
            return found
    shown = [c if "/" in c else f"{c} on PATH" for c in candidates]
    not_installed(what, package, f"no {' or '.join(shown)}")
    raise AssertionError("unreachable")  # pytest.skip and pytest.fail raise


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
