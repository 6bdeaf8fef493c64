"""Pages rendered once per language (web/pages.py): each answer still gets its own values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from newsletter import create_app
from newsletter.db.models import Subscriber
from newsletter.extensions import db, limiter
from newsletter.tokens import Purpose
from tests.conftest import (
    _fresh_schema,
    add_subscriber,
    base_config,
    form_fields,
    make_token,
    with_config,
)

STYLE_NONCE = re.compile(r'<style nonce="([A-Za-z0-9_-]+)">')
POLICY_NONCE = re.compile(r"style-src 'nonce-([A-Za-z0-9_-]+)'")


def _nonces(response: Any) -> tuple[str, str]:
    """The nonce of the page's <style> and the one its Content-Security-Policy allows."""
    page = response.get_data(as_text=True)
    found = STYLE_NONCE.search(page)
    allowed = POLICY_NONCE.search(response.headers["Content-Security-Policy"])
    assert found and allowed, page[:400]
    return found.group(1), allowed.group(1)


def _no_markers(response: Any) -> None:
    page = response.get_data(as_text=True)
    assert "\ue000" not in page and "\ue001" not in page


def test_each_visitor_of_the_blank_form_gets_their_own_nonce_and_csrf_token(app: Flask) -> None:
    first, second = app.test_client(), app.test_client()
    pages = [client.get("/subscribe") for client in (first, second, first)]
    for page in pages:
        assert page.status_code == 200
        _no_markers(page)
        style, allowed = _nonces(page)
        assert style == allowed
    assert len({_nonces(page)[0] for page in pages}) == 3
    fields = [form_fields(page.get_data(as_text=True)) for page in pages]
    assert all(f["csrf_token"] and f["started"] for f in fields)
    # A token belongs to its visitor's session: the two visitors' differ.
    assert fields[0]["csrf_token"] != fields[1]["csrf_token"]

    def post(client: Any, hidden: dict[str, str], email: str) -> Any:
        data = {**hidden, "email": email, "consent": "y", "frequency": "weekly"}
        return client.post("/subscribe", data=data)

    # Each visitor's own form goes through; the other visitor's token does not.
    assert post(second, fields[0], "borrowed@example.com").status_code == 400
    assert post(first, fields[0], "first@example.com").status_code == 303
    assert post(second, fields[1], "second@example.com").status_code == 303
    with app.app_context():
        emails = set(db.session.scalars(select(Subscriber.email)))
    assert emails == {"first@example.com", "second@example.com"}


@with_config(LANGUAGES=["en", "de"])
def test_the_blank_form_is_kept_per_language(app: Flask) -> None:
    client = app.test_client()
    english = client.get("/subscribe").get_data(as_text=True)
    german = client.get("/subscribe?lang=de").get_data(as_text=True)
    again = client.get("/subscribe", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Get the latest news" in english and "Get the latest news" in again
    assert "Die neuesten Nachrichten" in german and "Get the latest news" not in german
    assert 'action="/subscribe?lang=de"' in german
    assert 'action="/subscribe?lang=en"' in again


def test_the_unsubscribed_page_says_which_case_it_is_with_a_fresh_nonce_each_time(
    app: Flask,
) -> None:
    uid = add_subscriber(app, "reader@example.com", status="active")
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    client = app.test_client()
    answers = [
        client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
        for _ in range(3)
    ]
    texts = [answer.get_data(as_text=True) for answer in answers]
    assert all(answer.status_code == 200 for answer in answers)
    assert "unsubscribed" in texts[0]
    assert "already unsubscribed" not in texts[0]
    assert all("already unsubscribed" in text for text in texts[1:])
    for answer in answers:
        _no_markers(answer)
        style, allowed = _nonces(answer)
        assert style == allowed
    assert len({_nonces(answer)[0] for answer in answers}) == 3


def test_an_override_printing_csrf_token_gives_each_visitor_their_own(
    database_url: str, tmp_path: Path
) -> None:
    # A publisher's own form may print the token with Flask-WTF's csrf_token() rather than
    # through the form: it must still be each visitor's, never the first one's.
    overrides = tmp_path / "overrides"
    overrides.mkdir()
    (overrides / "subscribe.html").write_text(
        '{% extends "base.html" %}{% block content %}<form method="post">'
        '<input name="csrf_token" type="hidden" value="{{ csrf_token() }}">'
        '<input name="started" type="hidden" value="{{ form.started._value() }}">'
        "</form>{% endblock %}"
    )
    app = create_app({**base_config(database_url, tmp_path), "TEMPLATE_OVERRIDES": str(overrides)})
    _fresh_schema(app)
    first, second = app.test_client(), app.test_client()
    pages = [client.get("/subscribe") for client in (first, second)]
    for page in pages:
        _no_markers(page)
    tokens = [form_fields(page.get_data(as_text=True))["csrf_token"] for page in pages]
    assert tokens[0] != tokens[1]
    for client, page in zip((first, second), pages, strict=True):
        data = {**form_fields(page.get_data(as_text=True)), "consent": "y"}
        answer = client.post("/subscribe", data={**data, "email": f"{id(client)}@example.com"})
        assert answer.status_code == 303
    with app.app_context():
        assert len(db.session.scalars(select(Subscriber.email)).all()) == 2
        db.engine.dispose()


def test_a_limit_on_every_route_keeps_the_limiters_check_before_every_request(
    database_url: str, tmp_path: Path
) -> None:
    # Flask-Limiter's check runs before the API's requests only while no limit applies to
    # every route; once one does (here from its own setting), the form is limited too.
    try:
        app = create_app({**base_config(database_url, tmp_path), "RATELIMIT_DEFAULT": "2/minute"})
        client = app.test_client()
        statuses = [client.get("/subscribe").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        with app.app_context():
            db.engine.dispose()
    finally:
        # The limiter is the process's: later apps must not inherit this one's default.
        limiter.limit_manager.set_default_limits([])


def test_a_visitors_answers_do_not_depend_on_who_saw_the_form_first(app: Flask) -> None:
    # The console's sign-in (Flask-Login) must not touch a reader's session: with the form
    # kept from an earlier visitor, the signup's answer page would otherwise write a cookie
    # that the first visitor's did not.
    answers = []
    for n in range(2):
        client = app.test_client()
        page = client.get("/subscribe")
        data = {**form_fields(page.get_data(as_text=True)), "consent": "y"}
        client.post("/subscribe", data={**data, "email": f"visitor{n}@example.com"})
        answer = client.get("/subscribe/check-inbox")
        answers.append((answer.status_code, "Set-Cookie" in answer.headers))
        serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
        cookie = client.get_cookie("session")
        assert cookie is not None and "_fresh" not in serializer.loads(cookie.value)
    assert answers == [(200, False), (200, False)]
