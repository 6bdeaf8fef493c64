"""The console in tests: operator accounts, and its forms submitted as a browser would."""

from __future__ import annotations

import html
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from newsletter.extensions import db
from newsletter.operators import accounts

PASSWORD = "a long enough passphrase"
EDITOR = "editor@ledger.example"
OWNER = "owner@ledger.example"


def add_operator(app: Flask, email: str = EDITOR, role: str = "editor") -> None:
    with app.app_context():
        accounts.add(email, role, PASSWORD)
        db.session.commit()


def hidden_fields(form: str) -> dict[str, list[str]]:
    """A form's hidden fields, each with all its values (a field may repeat)."""
    found: dict[str, list[str]] = {}
    for tag in re.findall(r"<input\b[^>]*>", form):
        name = re.search(r'\bname="([^"]*)"', tag)
        value = re.search(r'\bvalue="([^"]*)"', tag)
        if 'type="hidden"' in tag and name:
            found.setdefault(name.group(1), []).append(
                html.unescape(value.group(1) if value else "")
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


def sign_in(client: FlaskClient, email: str = EDITOR, password: str = PASSWORD) -> None:
    """Sign in through the sign-in page; fails the test unless it lets the operator in."""
    answer = submit(client, "/admin/sign-in", "/admin/sign-in", email=email, password=password)
    assert answer.status_code == 302, answer.get_data(as_text=True)
