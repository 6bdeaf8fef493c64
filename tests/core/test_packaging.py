"""Installs that can be repeated: every dependency pinned in the committed lock, the libraries
whose internals the code uses capped below their next major release."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements() -> dict[str, str]:
    """Each runtime and test/dev requirement's name and its version specifier."""
    found: dict[str, str] = {}
    for line in [
        *PROJECT["dependencies"],
        *PROJECT["optional-dependencies"]["test"],
        *PROJECT["optional-dependencies"]["dev"],
    ]:
        match = NAME.match(line)
        assert match, line
        if canonical(match.group(1)) != "newsletter":
            found[canonical(match.group(1))] = match.group(3)
    return found


def pins() -> dict[str, str]:
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    return {
        canonical(name): version
        for name, version in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", lock, re.M)
    }


def test_every_requirement_is_pinned_to_one_version_in_the_lock() -> None:
    missing = sorted(set(requirements()) - set(pins()))
    assert not missing, f"not pinned in requirements.lock: {missing}"


def test_libraries_whose_internals_the_code_uses_are_capped_below_their_next_major() -> None:
    wanted = requirements()
    assert "<3" in wanted["itsdangerous"]  # newsletter/tokens.py
    assert "<6" in wanted["limits"]  # newsletter/extensions.py, SweptMemoryStorage
    assert pins()["itsdangerous"].split(".")[0] == "2"
    assert pins()["limits"].split(".")[0] in {"3", "4", "5"}


def test_what_the_runtime_needs_is_a_runtime_dependency() -> None:
    runtime = " ".join(PROJECT["dependencies"])
    assert "dkimpy[ed25519]" in runtime  # PyNaCl, to verify Ed25519 DKIM keys in doctor
    assert re.search(r"\btzdata\b", runtime)  # zone data where the system has none
    assert {"pynacl", "tzdata"} <= set(pins())
