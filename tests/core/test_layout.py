"""Rules that matter legally have one writer each: only one module inserts into their table.

Consent (who agreed to what), suppression (who must never be mailed) and who is a reader:
each table is written by its own module, so that every path (signup, import, operator,
bounce, erasure, one-click) follows the same rule. Read from the source, as a reviewer would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "newsletter"
# table -> (its model, the one module that may insert into it)
WRITERS = {
    "consent_event": ("ConsentEvent", "readers/consent.py"),
    "suppression": ("Suppression", "readers/suppression.py"),
    "subscriber": ("Subscriber", "readers/roster.py"),
    # Who may run the console, what they did, and which systems may call the API.
    "operator": ("Operator", "operators/accounts.py"),
    "audit_event": ("AuditEvent", "operators/audit.py"),
    "api_token": ("ApiToken", "operators/api_tokens.py"),
}


def inserts(source: str, table: str, model: str) -> list[str]:
    """The places in ``source`` that insert rows into ``table``."""
    patterns = [
        rf"INSERT\s+INTO\s+{table}\b",  # SQL text
        rf"\b(?:insert|upsert)\(\s*{model}\b",  # Core or dialect INSERT of the model
        rf"(?-i:(?<![\w.]){model}\()",  # an ORM object (the class's own spelling)
    ]
    return [m.group(0) for p in patterns for m in re.finditer(p, source, re.IGNORECASE)]


def sources() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.parts and path.name != "models.py"
    ]


@pytest.mark.parametrize("table", sorted(WRITERS))
def test_only_its_own_module_inserts_into(table: str) -> None:
    model, owner = WRITERS[table]
    found = {
        str(path.relative_to(PACKAGE)): hits
        for path in sources()
        if (hits := inserts(path.read_text(encoding="utf-8"), table, model))
    }
    assert set(found) == {owner}, found


def test_the_check_sees_each_kind_of_insert() -> None:
    assert inserts('text("INSERT INTO suppression (a) VALUES (1)")', "suppression", "Suppression")
    assert inserts("upsert(Suppression.__table__)", "suppression", "Suppression")
    assert inserts("db.session.add(ConsentEvent(action='x'))", "consent_event", "ConsentEvent")
    assert not inserts("select(Subscriber.id)", "subscriber", "Subscriber")
