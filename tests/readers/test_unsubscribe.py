"""Unsubscribing (RFC 2369, RFC 8058): the page, the RFC 8058 one-click POST, and bad links."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from newsletter.db.models import ConsentEvent, Subscriber
from newsletter.extensions import db
from newsletter.tokens import Purpose
from tests.conftest import add_subscriber, db_state, form_fields, make_token, signed_ago

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _status(app: Flask, uid: str) -> str:
    with app.app_context():
        return str(db.session.scalar(select(Subscriber.status).where(Subscriber.uid == uid)))


def _events(app: Flask) -> list[tuple[str, str]]:
    with app.app_context():
        rows = db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id))
        return [(event.action, event.source) for event in rows]


def _one_click(app: Flask, token: str, encoding: str = "urlencoded", **headers: str) -> Any:
    """The POST a mail client sends: no cookie, no CSRF token, whatever Origin it likes."""
    mail_client = app.test_client(use_cookies=False)
    kwargs: dict[str, Any] = {"data": ONE_CLICK, "headers": headers}
    if encoding == "multipart":
        kwargs["content_type"] = "multipart/form-data"
    return mail_client.post(f"/unsubscribe/{token}", **kwargs)


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
@pytest.mark.parametrize(
    "origin", [None, "null", "https://mail.google.com", "https://evil.example"]
)
def test_one_click_post_unsubscribes_without_cookie_csrf_or_origin(
    app: Flask, encoding: str, origin: str | None
) -> None:
    uid = add_subscriber(app)
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    headers = {"Origin": origin} if origin else {}

    response = _one_click(app, token, encoding, **headers)

    assert 200 <= response.status_code < 300, response.get_data(as_text=True)
    assert "Location" not in response.headers
    assert "unsubscribed" in response.get_data(as_text=True)
    assert _status(app, uid) == "unsubscribed"
    assert _events(app) == [("unsubscribe", "one-click")]


def test_one_click_multipart_body_is_really_multipart(app: Flask) -> None:
    # Guards the test above: the body must reach the app as multipart, not urlencoded.
    uid = add_subscriber(app)
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    seen: list[str] = []

    @app.before_request
    def _record() -> None:
        from flask import request

        seen.append(request.mimetype)

    _one_click(app, token, "multipart")
    assert seen == ["multipart/form-data"]


def test_repeating_the_one_click_post_is_harmless(app: Flask) -> None:
    uid = add_subscriber(app)
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})

    answers = [_one_click(app, token) for _ in range(3)]

    assert [r.status_code for r in answers] == [200, 200, 200]
    assert _status(app, uid) == "unsubscribed"
    assert _events(app) == [("unsubscribe", "one-click")], "one withdrawal, not three"


def test_one_click_for_a_reader_since_erased_still_answers_2xx(app: Flask) -> None:
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": "no-such-reader"})
    response = _one_click(app, token)
    assert response.status_code == 200
    assert db_state(app)["consent_events"] == 0


def test_get_shows_a_button_and_changes_nothing(app: Flask, client: FlaskClient) -> None:
    uid = add_subscriber(app)
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    before = db_state(app)

    page = client.get(f"/unsubscribe/{token}")

    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<button" in html and 'method="post"' in html
    assert f'action="/unsubscribe/{token}"' in html
    assert "<script" not in html.lower() and "http-equiv" not in html.lower()
    assert db_state(app) == before
    assert _status(app, uid) == "active"


def test_head_changes_nothing_either(app: Flask, client: FlaskClient) -> None:
    uid = add_subscriber(app)
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    before = db_state(app)
    assert client.head(f"/unsubscribe/{token}").status_code == 200
    assert db_state(app) == before


def test_the_pages_button_unsubscribes_and_records_the_page_as_source(
    app: Flask, client: FlaskClient
) -> None:
    uid = add_subscriber(app)
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    client.get(f"/unsubscribe/{token}")

    # The page's form has no fields: the button posts an empty body.
    response = client.post(f"/unsubscribe/{token}")

    assert response.status_code == 200
    assert "You're unsubscribed" in response.get_data(as_text=True)
    assert _status(app, uid) == "unsubscribed"
    assert _events(app) == [("unsubscribe", "unsubscribe-page")]


def test_withdrawal_is_logged_with_ip_user_agent_and_time(app: Flask) -> None:
    uid = add_subscriber(app)
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    mail_client = app.test_client(use_cookies=False)
    mail_client.post(
        f"/unsubscribe/{token}",
        data=ONE_CLICK,
        headers={"User-Agent": "Mail-Unsubscriber/1.0"},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    with app.app_context():
        event = db.session.scalars(select(ConsentEvent)).one()
        subscriber = db.session.scalars(select(Subscriber)).one()
        assert event.action == "unsubscribe" and event.source == "one-click"
        assert event.subscriber_id == subscriber.id
        assert event.ip == "198.51.100.7"
        assert event.user_agent == "Mail-Unsubscriber/1.0"
        assert event.occurred_at is not None
        assert event.detail == {"previous_status": "active"}
        assert subscriber.unsubscribed_at is not None


def _tampered(token: str) -> str:
    payload, timestamp, signature = token.split(".")
    flipped = "A" if signature[5] != "A" else "B"
    return f"{payload}.{timestamp}.{signature[:5]}{flipped}{signature[6:]}"


def _other_payload(token: str, other: str) -> str:
    # Somebody else's id under this token's signature.
    return ".".join([other.split(".")[0], *token.split(".")[1:]])


BAD_TOKENS = ["tampered", "truncated", "forged", "payload-swapped", "garbage", "confirm-purpose"]


def _bad_token(app: Flask, kind: str, uid: str, other_uid: str) -> str:
    good = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    if kind == "tampered":
        return _tampered(good)
    if kind == "truncated":
        return good[: len(good) - 8]
    if kind == "forged":
        forger = URLSafeTimedSerializer("guessed-key", salt="newsletter.unsubscribe")
        return str(forger.dumps({"s": uid}))
    if kind == "payload-swapped":
        return _other_payload(good, make_token(app, Purpose.UNSUBSCRIBE, {"s": other_uid}))
    if kind == "garbage":
        return "not-a-token"
    return make_token(app, Purpose.CONFIRM, {"s": uid, "n": "x"})


@pytest.mark.parametrize("kind", BAD_TOKENS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bad_token_is_a_4xx_page_and_changes_nothing(app: Flask, kind: str, method: str) -> None:
    uid = add_subscriber(app)
    other = add_subscriber(app, "other@example.com")
    token = _bad_token(app, kind, uid, other)
    before = db_state(app)

    mail_client = app.test_client(use_cookies=False)
    data = ONE_CLICK if method == "POST" else None
    response = mail_client.open(f"/unsubscribe/{token}", method=method, data=data)

    assert 400 <= response.status_code < 500
    assert "This link is not valid" in response.get_data(as_text=True)
    assert db_state(app) == before
    assert _status(app, uid) == _status(app, other) == "active"


@pytest.mark.parametrize("days", [31, 400])
def test_unsubscribe_link_keeps_working_long_after_the_mail(app: Flask, days: int) -> None:
    uid = add_subscriber(app)
    with signed_ago(days=days):
        token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})

    page = app.test_client().get(f"/unsubscribe/{token}")
    assert page.status_code == 200 and "<button" in page.get_data(as_text=True)
    assert _one_click(app, token).status_code == 200
    assert _status(app, uid) == "unsubscribed"


def test_unsubscribe_link_signed_with_a_rotated_key_still_works(app: Flask) -> None:
    uid = add_subscriber(app)
    app.config["SECRET_KEY"] = "old-key-retiring-soon"
    with signed_ago(days=45):
        token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    app.config["SECRET_KEY"] = "new-key-0123456789"
    app.config["SECRET_KEY_FALLBACKS"] = ["old-key-retiring-soon"]

    response = _one_click(app, token)

    assert response.status_code == 200
    assert _status(app, uid) == "unsubscribed"


def test_unsubscribe_link_signed_with_a_retired_key_is_refused(app: Flask) -> None:
    uid = add_subscriber(app)
    app.config["SECRET_KEY"] = "retired-key"
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    app.config["SECRET_KEY"] = "new-key-0123456789"
    app.config["SECRET_KEY_FALLBACKS"] = []

    response = _one_click(app, token)

    assert response.status_code == 400
    assert _status(app, uid) == "active"


def test_pending_reader_who_unsubscribes_cannot_be_confirmed_later(app: Flask) -> None:
    uid = add_subscriber(app, status="pending", confirm_nonce="nonce-1")
    confirm = make_token(app, Purpose.CONFIRM, {"s": uid, "n": "nonce-1"})
    _one_click(app, make_token(app, Purpose.UNSUBSCRIBE, {"s": uid}))

    client = app.test_client()
    page = client.get(f"/confirm/{confirm}")
    response = client.post(f"/confirm/{confirm}", data=form_fields(page.get_data(as_text=True)))

    assert response.status_code == 410
    assert _status(app, uid) == "unsubscribed"
