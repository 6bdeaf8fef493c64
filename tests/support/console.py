"""Helpers for the console's tests: operator accounts, signing in, and a list with a past."""

from __future__ import annotations

import html as html_text
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from newsletter.clock import utcnow
from newsletter.db.models import (
    BounceEvent,
    ConsentEvent,
    Delivery,
    Edition,
    EditionState,
    Subscriber,
    Suppression,
)
from newsletter.extensions import db
from newsletter.operators import accounts
from newsletter.readers.addresses import address_hash

PASSWORD = "correct-horse-battery-staple"
OWNER = "owner@ledger.example"
EDITOR = "editor@ledger.example"


def add_operator(
    app: Flask, email: str = EDITOR, role: str = "editor", password: str = PASSWORD
) -> int:
    with app.app_context():
        operator = accounts.add(email, role, password)
        db.session.commit()
        return int(operator.id)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert found, "no CSRF token on the page"
    return found.group(1)


def _token(client: FlaskClient, page: str) -> dict[str, str]:
    """The CSRF field of a console page as the client sees it (none when CSRF is off)."""
    answer = client.get(page, follow_redirects=True)
    html = answer.get_data(as_text=True)
    if not client.application.config.get("WTF_CSRF_ENABLED", True):
        return {}
    return {"csrf_token": csrf_of(html)}


def sign_in(client: FlaskClient, email: str = EDITOR, password: str = PASSWORD) -> Any:
    """Post the sign-in form as a browser would (its CSRF token first); the answer."""
    data = {**_token(client, "/admin/sign-in"), "email": email, "password": password}
    return client.post("/admin/sign-in", data=data)


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, page: str = "") -> Any:
    """POST a console form with the CSRF token of ``page`` (default: the dashboard)."""
    return client.post(path, data={**_token(client, page or "/admin/"), **(data or {})})


def hidden_fields(form: str) -> dict[str, list[str]]:
    """A form's hidden fields, each with all its values (a field may repeat)."""
    found: dict[str, list[str]] = {}
    for tag in re.findall(r"<input\b[^>]*>", form):
        name = re.search(r'\bname="([^"]*)"', tag)
        value = re.search(r'\bvalue="([^"]*)"', tag)
        if 'type="hidden"' in tag and name:
            found.setdefault(name.group(1), []).append(
                html_text.unescape(value.group(1) if value else "")
            )
    return found


def form_posting_to(page: str, action: str) -> str:
    """The first form of the page whose action is ``action``."""
    for form in re.findall(r"<form\b[^>]*>.*?</form>", page, re.S):
        if f'action="{action}"' in form:
            return str(form)
    raise AssertionError(f"no form posting to {action} on the page")


def submit(client: FlaskClient, page_path: str, action: str, **fields: Any) -> Any:
    """Post the form of the page at ``page_path`` whose action is ``action``: its hidden
    fields (CSRF token included) as the page gave them, updated by ``fields``."""
    page = client.get(page_path).get_data(as_text=True)
    data: dict[str, Any] = {**hidden_fields(form_posting_to(page, action)), **fields}
    return client.post(action, data=data)


NAMES = (
    "Ann Lee", "Bruno Díaz", "Chen Wei", "Dara Okafor", "Elif Kaya", "Femi Adeyemi",
    "Greta Holm", "Hana Sato", "Ivan Petrov", "Jonas Berg", "Kofi Mensah", "Lena Vogel",
    "Maria Okafor", "Nils Dahl", "Omar Haddad", "Priya Nair", "Quinn Byrne", "Rosa Marín",
    "Sami Laine", "Tomás Ruiz", "Uma Rao", "Vera Novak", "Will Hart", "Yara Costa",
)  # fmt: skip


@dataclass
class History:
    """What ``seed_history`` wrote, for tests to find their way around it."""

    now: datetime
    readers: dict[str, int] = field(default_factory=dict)  # address -> id
    editions: list[int] = field(default_factory=list)  # oldest first


def seed_history(
    app: Flask, days: int = 45, now: datetime | None = None, base: int = 360
) -> History:
    """A list with a past: ``base`` readers who joined over the last year, then readers
    joining every day of the last ``days``; some leave, bounce or complain. Three weekly
    editions with their outcomes, and every reader's consent log."""
    now = now or utcnow()
    history = History(now)
    earlier = [now - timedelta(days=60 + n * 37 % 300, hours=n % 24) for n in range(base)]
    recent = [
        now - timedelta(days=days - day - 1, hours=3)
        for day in range(days)
        for _ in range(2 + day * 7 % 5)
    ]
    with app.app_context():
        for number, at in enumerate(sorted(earlier) + recent):
            name = NAMES[number % len(NAMES)]
            email = f"{name.split()[0].lower()}.{number}@example.org"
            status = "active"
            confirmed: datetime | None = at + timedelta(minutes=10)
            unsubscribed = None
            if number % 9 == 4:
                status, unsubscribed = "unsubscribed", at + timedelta(days=3)
            elif number % 23 == 7:
                status = "bounced"
            elif number % 31 == 11:
                status = "complained"
            elif number % 13 == 5:
                status, confirmed = "pending", None
            if unsubscribed and unsubscribed > now:
                status, unsubscribed = "active", None
            reader = Subscriber(
                email=email,
                name=name,
                status=status,
                frequency="weekly" if number % 3 else "daily",
                created_at=at,
                confirmed_at=confirmed,
                unsubscribed_at=unsubscribed,
            )
            reader.topics = ["politics", "business"] if number % 2 else ["analytics"]
            db.session.add(reader)
            db.session.flush()
            history.readers[email] = reader.id
            if status in ("bounced", "complained"):
                db.session.add(
                    Suppression(
                        address_hash=address_hash(email),
                        reason=status,
                        created_at=min(at + timedelta(days=1), now),
                    )
                )
        readers = list(db.session.scalars(db.select(Subscriber).order_by(Subscriber.id)))
        for reader in readers:
            steps = [("signup", reader.created_at, "signup-page")]
            if reader.confirmed_at:
                steps.append(("confirm", reader.confirmed_at, "confirm-page"))
            if reader.unsubscribed_at:
                steps.append(("unsubscribe", reader.unsubscribed_at, "one-click"))
            for action, at, source in steps:
                db.session.add(
                    ConsentEvent(
                        subscriber_id=reader.id,
                        action=action,
                        occurred_at=at,
                        source=source,
                        ip="203.0.113.7",
                        user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0",
                        detail={},
                    )
                )
        for week in range(3):
            created = now - timedelta(days=21 - 7 * week, hours=1)
            edition = Edition(
                frequency="weekly",
                subject=f"The week in news, part {week + 1}",
                created_at=created,
                covers_until=created,
                state=EditionState.DONE,
                finished_at=created + timedelta(minutes=5),
            )
            db.session.add(edition)
            db.session.flush()
            history.editions.append(edition.id)
            for index, reader in enumerate(readers):
                reader_id, status = reader.id, reader.status
                # The newest edition went to every confirmed reader, the older ones to fewer.
                if status == "pending" or (week < 2 and index % (week + 2) == 0):
                    continue
                state = "failed" if index % 17 == 3 else "unknown" if index % 29 == 6 else "sent"
                delivery = Delivery(
                    edition_id=edition.id,
                    subscriber_id=reader_id,
                    state=state,
                    attempts=1,
                    sent_at=created + timedelta(minutes=2) if state == "sent" else None,
                    last_error="550 5.1.1 user unknown" if state == "failed" else None,
                    message_id=f"<{edition.id}.{reader_id}@ledger.example>",
                )
                db.session.add(delivery)
                db.session.flush()
                if status in ("bounced", "complained") and state == "sent":
                    db.session.add(
                        BounceEvent(
                            delivery_id=delivery.id,
                            subscriber_id=reader_id,
                            kind="hard" if status == "bounced" else "complaint",
                            status="5.1.1" if status == "bounced" else None,
                            diagnostic="550 5.1.1 <***@example.org>: no such user"
                            if status == "bounced"
                            else "",
                            source="webhook",
                            fingerprint=f"{edition.id}-{reader_id}",
                            received_at=created + timedelta(hours=2),
                        )
                    )
        db.session.commit()
    return history


def query_plans(app: Flask, call: Any) -> list[str]:
    """SQLite's plan for every SELECT that ``call()`` runs (inside an app context)."""
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    with app.app_context():
        engine = db.engine
        assert engine.dialect.name == "sqlite"
        event.listen(engine, "before_cursor_execute", note)
        try:
            call()
        finally:
            event.remove(engine, "before_cursor_execute", note)
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            plans = []
            for statement, parameters in seen:
                cursor.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
                plans.append("\n".join(str(row[-1]) for row in cursor.fetchall()))
            return plans
        finally:
            raw.close()
