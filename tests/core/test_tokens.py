"""Signed links: purposes, expiry and resend, key rotation, opaque payloads."""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import BadSignature, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode
from sqlalchemy import select

from newsletter.db.models import ConsentEvent, Subscriber
from newsletter.errors import TokenInvalid
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.tokens import Purpose, encoded_payload, load, minter, sign
from tests.conftest import (
    add_subscriber,
    db_state,
    form_fields,
    link_from,
    make_token,
    path_of,
    signed_ago,
    signup,
    with_config,
    without_nonce,
)

LINK_PURPOSES = [Purpose.CONFIRM, Purpose.UNSUBSCRIBE, Purpose.PREFERENCES]
ROUTES = {
    Purpose.CONFIRM: ["/confirm/{}", "/confirm/{}/resend"],
    Purpose.UNSUBSCRIBE: ["/unsubscribe/{}"],
    Purpose.PREFERENCES: ["/preferences/{}"],
}


def _status(app: Flask) -> str:
    with app.app_context():
        return str(db.session.scalar(select(Subscriber.status)))


def _actions(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(ConsentEvent.action).order_by(ConsentEvent.id)))


def _submit(client: FlaskClient, path: str, **data: Any) -> Any:
    """Open a page and press its button, as a reader does (CSRF token included)."""
    page = client.get(path)
    return client.post(path, data={**form_fields(page.get_data(as_text=True)), **data})


def _signup_and_confirm_link(
    client: FlaskClient, outbox: list[OutgoingMessage], email: str = "reader@example.com"
) -> str:
    signup(client, email)
    return path_of(link_from(outbox[-1], "/confirm/"))


def _payload_text(token: str) -> str:
    """What anybody holding the link can read from it without the key."""
    compressed = token.startswith(".")
    raw = base64_decode(token.lstrip(".").split(".")[0])
    return (zlib.decompress(raw) if compressed else raw).decode()


CROSSED = [
    (signed_for, used_as)
    for signed_for in [*LINK_PURPOSES, Purpose.SIGNUP_FORM]
    for used_as in LINK_PURPOSES
    if signed_for != used_as
]


@pytest.mark.parametrize(
    ("signed_for", "used_as"), CROSSED, ids=[f"{a}-as-{b}" for a, b in CROSSED]
)
def test_a_token_fails_under_every_other_purpose(
    app: Flask, signed_for: Purpose, used_as: Purpose
) -> None:
    # The richest payload, so that only the salt can tell the purposes apart.
    uid = add_subscriber(app, status="pending", confirm_nonce="nonce-1")
    token = make_token(app, signed_for, {"s": uid, "n": "nonce-1"})
    before = db_state(app)
    client = app.test_client()
    csrf = form_fields(client.get("/subscribe").get_data(as_text=True))

    with app.app_context(), pytest.raises(TokenInvalid):
        load(used_as, token)
    for route in ROUTES[used_as]:
        for method in ("GET", "POST"):
            if route.endswith("resend") and method == "GET":
                continue
            response = client.open(route.format(token), method=method, data=csrf)
            assert 400 <= response.status_code < 500, (route, method)
            assert "not valid" in response.get_data(as_text=True)
    assert db_state(app) == before


@with_config(CONFIRM_MAX_AGE_DAYS=2)
def test_confirm_link_works_until_it_expires_after_the_configured_days(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    with signed_ago(days=1):
        fresh = _signup_and_confirm_link(client, outbox, "early@example.com")
    with signed_ago(days=3):
        old = _signup_and_confirm_link(client, outbox, "reader@example.com")
    assert client.get(fresh).status_code == 200
    before = db_state(app)

    page = client.get(old)
    refused = client.post(old, data=form_fields(page.get_data(as_text=True)))

    html = page.get_data(as_text=True)
    assert page.status_code == 410 and refused.status_code == 410
    assert "This link has expired" in html
    assert f'action="{old}/resend"' in html and "Send me a new link" in html
    assert db_state(app) == before
    with app.app_context():
        assert set(db.session.scalars(select(Subscriber.status))) == {"pending"}


def _expired_link(app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]) -> str:
    days = app.config["CONFIRM_MAX_AGE_DAYS"] + 1
    with signed_ago(days=days):
        return _signup_and_confirm_link(client, outbox)


def test_expired_link_offers_a_resend_that_mails_a_fresh_working_link(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    old = _expired_link(app, client, outbox)
    outbox.clear()

    page = client.get(old)
    response = client.post(f"{old}/resend", data=form_fields(page.get_data(as_text=True)))

    assert response.status_code == 200
    assert "Check your inbox" in response.get_data(as_text=True)
    assert [m.recipient for m in outbox] == ["reader@example.com"]
    fresh = path_of(link_from(outbox[0], "/confirm/"))
    assert fresh != old
    assert _submit(client, fresh).status_code == 200
    assert _status(app) == "active"


@with_config(RATELIMIT_RESEND="100 per hour")
def test_resend_is_capped_per_address_with_the_same_answer(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    old = _expired_link(app, client, outbox)  # the signup mail counts towards the cap
    fields = form_fields(client.get(old).get_data(as_text=True))

    answers = [client.post(f"{old}/resend", data=fields) for _ in range(4)]

    assert len(outbox) == app.config["CONFIRM_MAILS_PER_DAY"]
    assert {r.status_code for r in answers} == {200}
    assert len({without_nonce(r.get_data()) for r in answers}) == 1


@with_config(RATELIMIT_RESEND="2 per hour", CONFIRM_MAILS_PER_DAY=100)
def test_resend_is_limited_per_ip_with_a_429_page(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    old = _expired_link(app, client, outbox)
    fields = form_fields(client.get(old).get_data(as_text=True))
    for _ in range(2):
        assert client.post(f"{old}/resend", data=fields).status_code == 200
    sent = len(outbox)

    response = client.post(f"{old}/resend", data=fields)

    assert response.status_code == 429
    assert "Too many attempts" in response.get_data(as_text=True)
    assert len(outbox) == sent


@pytest.mark.parametrize("since", ["confirmed", "unsubscribed"])
def test_resend_sends_nothing_once_the_link_has_no_use(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage], since: str
) -> None:
    old = _expired_link(app, client, outbox)
    with app.app_context():
        subscriber = db.session.scalars(select(Subscriber)).one()
        uid = subscriber.uid
        if since == "confirmed":
            subscriber.status, subscriber.confirm_nonce = "active", None
            db.session.commit()
    if since == "unsubscribed":
        token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
        app.test_client(use_cookies=False).post(f"/unsubscribe/{token}")
    outbox.clear()

    fields = form_fields(client.get(old).get_data(as_text=True))
    response = client.post(f"{old}/resend", data=fields)

    assert response.status_code == 200 and "Check your inbox" in response.get_data(as_text=True)
    assert outbox == []


def test_resend_of_a_still_valid_link_just_shows_the_confirm_button(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    link = _signup_and_confirm_link(client, outbox)
    outbox.clear()
    fields = form_fields(client.get(link).get_data(as_text=True))
    response = client.post(f"{link}/resend", data=fields)
    assert response.status_code == 200 and "<button" in response.get_data(as_text=True)
    assert outbox == [] and _status(app) == "pending"


def test_confirm_link_signed_with_a_rotated_key_still_confirms(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    app.config["SECRET_KEY"] = "old-key-being-retired"
    link = _signup_and_confirm_link(client, outbox)
    app.config["SECRET_KEY"] = "new-key-0123456789"
    app.config["SECRET_KEY_FALLBACKS"] = ["old-key-being-retired"]
    client = app.test_client()  # a fresh session: the old cookie's key is being retired too

    assert _submit(client, link).status_code == 200
    assert _status(app) == "active"


def test_new_tokens_are_signed_with_the_newest_key(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    app.config["SECRET_KEY"] = "new-key-0123456789"
    app.config["SECRET_KEY_FALLBACKS"] = ["old-key-being-retired"]
    link = _signup_and_confirm_link(client, outbox)
    token = link.removeprefix("/confirm/")

    newest = URLSafeTimedSerializer("new-key-0123456789", salt="newsletter.confirm")
    oldest = URLSafeTimedSerializer("old-key-being-retired", salt="newsletter.confirm")
    assert newest.loads(token)["s"]
    with pytest.raises(BadSignature):
        oldest.loads(token)


def test_a_link_signed_with_a_retired_key_is_refused(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    app.config["SECRET_KEY"] = "retired-key"
    link = _signup_and_confirm_link(client, outbox)
    app.config["SECRET_KEY"] = "new-key-0123456789"
    app.config["SECRET_KEY_FALLBACKS"] = []
    client = app.test_client()

    assert client.get(link).status_code == 400
    assert _status(app) == "pending"


def test_links_in_mail_carry_opaque_ids_never_the_address(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    email = "private.person@example.com"
    signup(client, email)  # a confirmation mail
    add_subscriber(app, "known.reader@example.com")
    signup(client, "known.reader@example.com")  # an "already subscribed" mail, with two links

    tokens = [
        path_of(link_from(outbox[0], "/confirm/")).removeprefix("/confirm/"),
        path_of(link_from(outbox[1], "/preferences/")).removeprefix("/preferences/"),
        path_of(link_from(outbox[1], "/unsubscribe/")).removeprefix("/unsubscribe/"),
    ]
    with app.app_context():
        readers = {s.email: s for s in db.session.scalars(select(Subscriber))}
    for token, owner in zip(tokens, [email, *["known.reader@example.com"] * 2], strict=True):
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", token), "URL-safe"
        text = _payload_text(token)
        payload = json.loads(text)
        for address in readers:
            assert address not in text and address.split("@")[0] not in text
        assert payload["s"] == readers[owner].uid
        assert readers[owner].id not in payload.values() and str(readers[owner].id) != payload["s"]


def test_replaying_a_confirm_link_after_unsubscribing_does_not_subscribe_again(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    link = _signup_and_confirm_link(client, outbox)
    assert _submit(client, link).status_code == 200
    with app.app_context():
        uid = db.session.scalar(select(Subscriber.uid))
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    app.test_client(use_cookies=False).post(f"/unsubscribe/{token}")

    replay = _submit(client, link)

    assert replay.status_code == 410
    assert "no longer valid" in replay.get_data(as_text=True)
    assert _status(app) == "unsubscribed"
    assert _actions(app) == ["signup", "confirm", "unsubscribe"]


def test_a_new_signup_after_unsubscribing_needs_the_new_link_not_the_old_one(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    first = _signup_and_confirm_link(client, outbox)
    _submit(client, first)
    with app.app_context():
        uid = db.session.scalar(select(Subscriber.uid))
    app.test_client(use_cookies=False).post(
        f"/unsubscribe/{make_token(app, Purpose.UNSUBSCRIBE, {'s': uid})}"
    )
    second = _signup_and_confirm_link(client, outbox)

    assert _submit(client, first).status_code == 410
    assert _status(app) == "unsubscribed"
    assert _submit(client, second).status_code == 200
    assert _status(app) == "active"


def test_confirming_twice_is_harmless(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    link = _signup_and_confirm_link(client, outbox)
    _submit(client, link)
    again = _submit(client, link)
    assert again.status_code == 200
    assert "already subscribed" in again.get_data(as_text=True)
    assert _actions(app) == ["signup", "confirm"]


def _auto_submits(html: str) -> bool:
    """Anything that could press the button without a person: scripts, handlers, refreshes."""
    lowered = html.lower()
    return (
        "<script" in lowered
        or "http-equiv" in lowered
        or "javascript:" in lowered
        or re.search(r"\son[a-z]+\s*=", lowered) is not None
    )


def test_get_on_a_confirm_link_changes_nothing_and_cannot_submit_itself(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    link = _signup_and_confirm_link(client, outbox)
    before = db_state(app)

    pages = [client.get(link), client.get(link), client.head(link)]

    assert [p.status_code for p in pages] == [200, 200, 200]
    html = pages[0].get_data(as_text=True)
    assert "<button" in html and 'method="post"' in html
    assert not _auto_submits(html)
    assert db_state(app) == before and _status(app) == "pending"


def test_get_on_an_unsubscribe_link_cannot_submit_itself(app: Flask, client: FlaskClient) -> None:
    uid = add_subscriber(app)
    page = client.get(f"/unsubscribe/{make_token(app, Purpose.UNSUBSCRIBE, {'s': uid})}")
    assert page.status_code == 200 and not _auto_submits(page.get_data(as_text=True))
    assert _status(app) == "active"


@pytest.mark.parametrize("purpose", list(Purpose))
def test_signed_tokens_are_exactly_what_itsdangerous_makes_and_verify(
    app: Flask, purpose: Purpose, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tokens are minted without itsdangerous' per-call machinery (a digest signs two per
    # reader); they must stay the very tokens URLSafeTimedSerializer.dumps would give.
    app.config["SECRET_KEY"] = "new-key-0123456789"
    app.config["SECRET_KEY_FALLBACKS"] = ["old-key-being-retired"]
    payload = {"s": "0GZx3-uid-é✓", "n": "nonce"}
    monkeypatch.setattr("time.time", lambda: 1_795_000_000.25)
    with app.app_context():
        token = sign(purpose, payload)
        reference = URLSafeTimedSerializer(
            ["old-key-being-retired", "new-key-0123456789"], salt=f"newsletter.{purpose.value}"
        )
        assert token == reference.dumps(payload)
        # A digest encodes the payload once and seals it for each of its two links.
        assert minter(purpose).seal(encoded_payload(payload)) == token
        monkeypatch.undo()
        if purpose in (Purpose.UNSUBSCRIBE, Purpose.PREFERENCES):
            assert load(purpose, token) == payload
        with pytest.raises(BadSignature):
            URLSafeTimedSerializer("old-key-being-retired", salt=reference.salt).loads(token)
