"""Readers through the API: the form's double opt-in, lookups, exports and unsubscribes."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter.db.models import AuditEvent, ConsentEvent, ConsentWording, Subscriber
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.readers.addresses import address_hash
from newsletter.web.api.readers import ACCEPTED, UNSUBSCRIBED
from tests.conftest import (
    add_subscriber,
    db_state,
    form_fields,
    link_from,
    mail_parts,
    path_of,
    with_config,
)
from tests.support.api import assert_problem, bad_fields, call, make_api_token

SUBSCRIBE = "/api/v1/subscriptions"


def _subscribe(client: FlaskClient, secret: str, **fields: Any) -> Any:
    return call(client, "POST", SUBSCRIBE, secret, json={"consent": True, **fields})


def _events(app: Flask, email: str) -> list[ConsentEvent]:
    with app.app_context():
        subscriber_id = db.session.scalar(select(Subscriber.id).where(Subscriber.email == email))
        return list(
            db.session.scalars(
                select(ConsentEvent)
                .where(ConsentEvent.subscriber_id == subscriber_id)
                .order_by(ConsentEvent.id)
            )
        )


def _steady(headers: Any) -> dict[str, str]:
    """Headers but for those that change on every call (the budget left, the style nonce)."""
    changing = ("Content-Security-Policy", "Retry-After")
    return {
        name: "" if name.startswith("X-RateLimit") or name in changing else value
        for name, value in headers.items()
    }


# --- subscribe ------------------------------------------------------------------------------


def test_subscribe_starts_the_double_opt_in_with_one_confirmation_mail(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    token_id, secret = make_api_token(app, "subscribe", name="CMS")
    response = _subscribe(
        client,
        secret,
        email=" Reader@Example.com ",
        name="Ada",
        topics=["politics", "culture"],
        frequency="daily",
    )
    assert response.status_code == 202
    assert response.get_json()["status"] == "accepted"

    assert len(outbox) == 1
    assert outbox[0].recipient == "reader@example.com"
    with app.app_context():
        reader = db.session.scalars(select(Subscriber)).one()
        assert reader.status == "pending"  # nothing is active before the link is used
    [event] = _events(app, "reader@example.com")
    assert event.action == "signup"
    assert event.source == f"api:CMS#{token_id}"
    assert event.consent_version is not None  # the wording agreed to
    assert event.detail["topics"] == ["politics", "culture"]

    # The link in that mail confirms the request's choices, as after the form.
    confirm = path_of(link_from(outbox[0], "/confirm/"))
    page = client.get(confirm).get_data(as_text=True)
    assert 'value="Ada"' in page
    client.post(confirm, data=form_fields(page))
    with app.app_context():
        reader = db.session.scalars(select(Subscriber)).one()
        assert (reader.status, reader.frequency, reader.name) == ("active", "daily", "Ada")
        assert sorted(reader.topics) == ["culture", "politics"]


@pytest.mark.parametrize("state", ["new", "pending", "active", "unsubscribed", "bounced"])
def test_subscribe_gives_the_same_answer_whatever_the_address_is(
    app: Flask,
    client: FlaskClient,
    tokens: dict[str, str],
    outbox: list[OutgoingMessage],
    state: str,
) -> None:
    if state != "new":
        add_subscriber(app, "reader@example.com", status=state, confirm_nonce="n0nce")
    reference = _subscribe(client, tokens["subscribe"], email="someone.else@example.com")

    response = _subscribe(client, tokens["subscribe"], email="reader@example.com")

    assert response.status_code == reference.status_code == 202
    assert response.get_data() == reference.get_data()
    assert _steady(response.headers) == _steady(reference.headers)
    # One mail for this address (a link, or for an active reader a notice), never more.
    assert [m.recipient for m in outbox].count("reader@example.com") == 1


@with_config(CONFIRM_MAILS_PER_DAY=2)
def test_the_per_address_mail_limit_holds_and_the_answer_does_not_change(
    app: Flask, client: FlaskClient, tokens: dict[str, str], outbox: list[OutgoingMessage]
) -> None:
    answers = {
        _subscribe(client, tokens["subscribe"], email="r@example.com").get_data() for _ in range(5)
    }
    assert len(answers) == 1
    assert len(outbox) == 2
    assert len(_events(app, "r@example.com")) == 2  # over the limit nothing is written


def test_subscribe_needs_the_readers_consent(
    app: Flask, client: FlaskClient, tokens: dict[str, str], outbox: list[OutgoingMessage]
) -> None:
    before = db_state(app)
    missing = call(client, "POST", SUBSCRIBE, tokens["subscribe"], json={"email": "r@example.com"})
    assert bad_fields(missing) == {"#/consent": "missing"}
    refused = _subscribe(client, tokens["subscribe"], email="r@example.com", consent=False)
    assert "#/consent" in bad_fields(refused)
    not_a_boolean = _subscribe(client, tokens["subscribe"], email="r@example.com", consent="yes")
    assert bad_fields(not_a_boolean)["#/consent"] == "must be true or false, not string"
    assert db_state(app) == before
    assert outbox == []


def test_subscribe_names_every_bad_field_and_writes_nothing(
    app: Flask, client: FlaskClient, tokens: dict[str, str], outbox: list[OutgoingMessage]
) -> None:
    before = db_state(app)
    response = _subscribe(
        client,
        tokens["subscribe"],
        email="reader@example.com\r\nBcc: victim@example.org",
        name="Ada\nLovelace",
        topics=["politics", "astrology", 7],
        frequency="hourly",
        referrer="home page",
    )
    errors = bad_fields(response)
    assert set(errors) == {
        "#/email",
        "#/name",
        "#/topics/1",
        "#/topics/2",
        "#/frequency",
        "#/referrer",
    }
    assert errors["#/topics/1"].startswith("unknown (known: breaking-news, politics")
    assert "unknown field" in errors["#/referrer"]
    assert db_state(app) == before
    assert outbox == []


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"email": None, "consent": True}, "#/email"),
        ({"email": ["r@example.com"], "consent": True}, "#/email"),
        ({"email": "r@example.com", "consent": True, "name": None}, "#/name"),
        ({"email": "r@example.com", "consent": True, "name": "x" * 101}, "#/name"),
        ({"email": "r@example.com", "consent": True, "topics": "politics"}, "#/topics"),
        ({"email": "r@example.com", "consent": True, "frequency": ""}, "#/frequency"),
        ({"email": "x" * 400 + "@example.com", "consent": True}, "#/email"),
    ],
)
def test_subscribe_refuses_values_of_the_wrong_kind(
    client: FlaskClient, tokens: dict[str, str], body: dict[str, Any], pointer: str
) -> None:
    assert pointer in bad_fields(call(client, "POST", SUBSCRIBE, tokens["subscribe"], json=body))


THREE = {"LANGUAGES": ["en", "de", "ar"]}


def _subject(message: OutgoingMessage) -> str:
    from email import message_from_bytes, policy

    return str(message_from_bytes(message.data, policy=policy.default)["Subject"])


def _wording(app: Flask, version: str | None) -> str:
    with app.app_context():
        found = db.session.get(ConsentWording, version)
        assert found is not None
        return str(found.text)


@with_config(**THREE)
def test_subscribe_in_a_language_writes_to_the_reader_in_it(
    app: Flask, client: FlaskClient, tokens: dict[str, str], outbox: list[OutgoingMessage]
) -> None:
    response = _subscribe(client, tokens["subscribe"], email="leser@example.de", language="de")
    assert response.status_code == 202
    assert response.get_json() == ACCEPTED  # the API itself stays in English

    [mail] = outbox
    assert _subject(mail) == "Bestätigen Sie Ihr Abonnement von The Daily Ledger"
    text, html = mail_parts(mail)
    assert "Der Link gilt 7 Tage." in text
    assert '<html lang="de" dir="ltr" ' in html
    [event] = _events(app, "leser@example.de")
    assert event.detail["language"] == "de"
    # The reader agreed to the consent wording in their language, and that is the one kept.
    assert _wording(app, event.consent_version).startswith("Ihre Angaben sind sicher.")

    # Their link opens a German page, and confirming keeps German.
    confirm = path_of(link_from(mail, "/confirm/"))
    page = client.get(confirm).get_data(as_text=True)
    assert '<html lang="de" dir="ltr">' in page
    client.post(confirm, data=form_fields(page))
    with app.app_context():
        reader = db.session.scalars(select(Subscriber)).one()
        assert (reader.status, reader.language) == ("active", "de")


@with_config(**THREE)
def test_subscribe_without_a_language_gives_the_sites(
    app: Flask, client: FlaskClient, tokens: dict[str, str], outbox: list[OutgoingMessage]
) -> None:
    _subscribe(client, tokens["subscribe"], email="reader@example.com")
    assert _subject(outbox[0]) == "Confirm your subscription to The Daily Ledger"
    [event] = _events(app, "reader@example.com")
    assert "language" not in event.detail
    assert _wording(app, event.consent_version).startswith("Your information is secure.")


@pytest.mark.parametrize(
    ("config_overrides", "language", "detail"),
    [
        (THREE, "fr", "must be one of en, de, ar"),
        (THREE, "de-AT", "must be one of en, de, ar"),  # a code of LANGUAGES, exactly
        (THREE, "DE", "must be one of en, de, ar"),
        (THREE, "", "must be one of en, de, ar"),
        ({"LANGUAGES": ["en"]}, "de", "must be one of en"),  # one the site does not offer
        (THREE, 49, "must be a string, not number"),
        (THREE, None, "must be a string, not null"),
        (THREE, "d" * 17, "must be at most 16 characters"),
    ],
)
def test_subscribe_refuses_a_language_the_site_does_not_offer_and_writes_nothing(
    app: Flask,
    client: FlaskClient,
    tokens: dict[str, str],
    outbox: list[OutgoingMessage],
    language: object,
    detail: str,
) -> None:
    before = db_state(app)
    response = _subscribe(
        client, tokens["subscribe"], email="reader@example.com", language=language
    )
    assert bad_fields(response) == {"#/language": detail}
    assert db_state(app) == before
    assert outbox == []


# --- lookup and export ----------------------------------------------------------------------


def test_lookup_shows_a_readers_state_and_is_audited(
    app: Flask, client: FlaskClient, tokens: dict[str, str]
) -> None:
    add_subscriber(app, "reader@example.com", topics=("politics",), frequency="daily")
    response = call(
        client,
        "POST",
        "/api/v1/readers/lookup",
        tokens["read"],
        json={"email": "READER@example.com"},
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"  # a reader's data, kept by no cache
    reader = response.get_json()
    assert reader["email"] == "reader@example.com"
    assert (reader["status"], reader["frequency"], reader["topics"]) == (
        "active",
        "daily",
        ["politics"],
    )
    assert "uid" not in reader and "confirm_nonce" not in reader

    unknown = call(
        client,
        "POST",
        "/api/v1/readers/lookup",
        tokens["read"],
        json={"email": "nobody@example.com"},
    )
    assert_problem(unknown, 404)
    with app.app_context():
        actions = [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert actions == ["reader.lookup", "reader.lookup"]


def test_the_address_travels_in_the_body_never_the_url(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    response = call(
        client,
        "GET",
        "/api/v1/readers/lookup",
        tokens["read"],
        query_string={"email": "r@example.com"},
    )
    assert_problem(response, 405)


def test_export_holds_the_consent_history_with_the_api_as_its_source(
    app: Flask, client: FlaskClient
) -> None:
    subscribe_id, subscribe = make_api_token(app, "subscribe", name="CMS")
    _, read = make_api_token(app, "read", name="Privacy desk")
    _subscribe(client, subscribe, email="reader@example.com")
    response = call(
        client, "POST", "/api/v1/readers/export", read, json={"email": "reader@example.com"}
    )
    assert response.status_code == 200
    held = response.get_json()
    assert held["subscriber"]["status"] == "pending"
    [signup] = held["consent_history"]
    assert signup["source"] == f"api:CMS#{subscribe_id}"
    assert "By opting in you agree" in signup["consent_wording"]

    nobody = call(
        client, "POST", "/api/v1/readers/export", read, json={"email": "nobody@example.com"}
    )
    assert nobody.status_code == 200
    assert nobody.get_json()["subscriber"] is None


# --- unsubscribe ----------------------------------------------------------------------------


def test_unsubscribe_withdraws_consent_as_the_apis_act(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    token_id, secret = make_api_token(app, "send", name="Account pages")
    add_subscriber(app, "reader@example.com")
    path = "/api/v1/readers/unsubscribe"

    response = call(client, "POST", path, secret, json={"email": "reader@example.com"})
    assert response.status_code == 202
    assert response.get_json() == UNSUBSCRIBED

    [event] = _events(app, "reader@example.com")
    assert (event.action, event.source) == ("unsubscribe", f"api:Account pages#{token_id}")
    assert event.detail == {"previous_status": "active"}
    with app.app_context():
        audit = db.session.scalars(select(AuditEvent)).one()
        assert (audit.actor, audit.action) == (
            f"api:Account pages#{token_id}",
            "reader.unsubscribe",
        )
        assert audit.target == f"address:{address_hash('reader@example.com')}"
        assert audit.detail == {"withdrawn": True}

    again = call(client, "POST", path, secret, json={"email": "reader@example.com"})
    assert (again.status_code, again.get_json()) == (202, UNSUBSCRIBED)
    assert len(_events(app, "reader@example.com")) == 1  # nothing more to withdraw, nothing logged
    assert outbox == []


@pytest.mark.parametrize("state", ["new", "pending", "active", "unsubscribed", "bounced"])
def test_unsubscribe_gives_the_same_answer_whatever_the_address_is(
    app: Flask, client: FlaskClient, tokens: dict[str, str], state: str
) -> None:
    # A send token mails everyone but reads nobody's data: not even whether an address is a
    # reader's, nor in what state.
    if state != "new":
        add_subscriber(app, "reader@example.com", status=state)
    path = "/api/v1/readers/unsubscribe"
    reference = call(client, "POST", path, tokens["send"], json={"email": "other@example.com"})

    response = call(client, "POST", path, tokens["send"], json={"email": "reader@example.com"})

    assert response.status_code == reference.status_code == 202
    assert response.get_data() == reference.get_data()
    assert response.get_json() == UNSUBSCRIBED
    assert _steady(response.headers) == _steady(reference.headers)
    with app.app_context():
        withdrawn = db.session.scalars(
            select(AuditEvent.detail).order_by(AuditEvent.id.desc()).limit(1)
        ).one()
    assert withdrawn == {"withdrawn": state in ("pending", "active")}
