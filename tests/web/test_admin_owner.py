"""The owner's pages (operators, the audit log, settings, API tokens) and the bounce log."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter import config
from newsletter.clock import utcnow
from newsletter.db.models import AuditEvent, BounceEvent, Subscriber, Suppression
from newsletter.extensions import db
from newsletter.operators import accounts, api_tokens, audit
from newsletter.readers.addresses import address_hash
from tests.conftest import with_config
from tests.support.console import EDITOR, OWNER, PASSWORD, add_operator, post, sign_in


@pytest.fixture
def owner(app: Flask, client: FlaskClient) -> FlaskClient:
    add_operator(app, OWNER, "owner")
    assert sign_in(client, OWNER).status_code == 303
    return client


def audited(app: Flask) -> list[tuple[str, str, str]]:
    with app.app_context():
        return [
            tuple(row)  # type: ignore[misc]
            for row in db.session.execute(
                select(AuditEvent.actor, AuditEvent.action, AuditEvent.target).order_by(
                    AuditEvent.id
                )
            )
        ]


def text(answer: object) -> str:
    return unescape(answer.get_data(as_text=True))  # type: ignore[attr-defined]


def test_an_owner_adds_an_operator_who_can_then_sign_in(app: Flask, owner: FlaskClient) -> None:
    added = post(
        owner,
        "/admin/operators",
        {"email": "New.Editor@Ledger.example", "role": "editor", "password": PASSWORD},
        page="/admin/operators",
    )
    assert added.status_code == 303
    assert "new.editor@ledger.example can now sign in as editor." in text(
        owner.get("/admin/operators")
    )
    assert sign_in(app.test_client(), "new.editor@ledger.example").status_code == 303
    assert (f"operator:{OWNER}", "operator.add", "new.editor@ledger.example") in audited(app)
    again = post(
        owner,
        "/admin/operators",
        {"email": "new.editor@ledger.example", "role": "owner", "password": PASSWORD},
        page="/admin/operators",
    )
    assert again.status_code == 400
    assert "Not added: new.editor@ledger.example already has an account." in text(again)
    short = post(
        owner,
        "/admin/operators",
        {"email": "x@ledger.example", "role": "editor", "password": "short"},
        page="/admin/operators",
    )
    assert short.status_code == 400
    assert "The password must have 12 to 1024 characters." in text(short)
    with app.app_context():
        assert accounts.by_email("x@ledger.example") is None


def test_roles_change_and_removed_accounts_end_but_the_last_owner_stays(
    app: Flask, owner: FlaskClient
) -> None:
    editor_id = add_operator(app, EDITOR, "editor")
    editor = app.test_client()
    sign_in(editor, EDITOR)
    with app.app_context():
        owner_row = accounts.by_email(OWNER)
        assert owner_row is not None
        owner_id = owner_row.id
    # The only owner cannot stop being one, nor be removed.
    kept = post(owner, f"/admin/operators/{owner_id}/role", {"role": "editor"})
    assert kept.status_code == 303
    assert "Nothing changed: the last owner cannot stop being an owner." in text(
        owner.get("/admin/operators")
    )
    post(owner, f"/admin/operators/{owner_id}/remove")
    assert "the last owner cannot be removed" in text(owner.get("/admin/operators"))
    with app.app_context():
        assert accounts.owners() == 1

    assert post(owner, f"/admin/operators/{editor_id}/role", {"role": "owner"}).status_code == 303
    assert editor.get("/admin/settings").status_code == 200  # an owner now, at once
    assert post(owner, f"/admin/operators/{editor_id}/remove").status_code == 303
    assert editor.get("/admin/").status_code == 302  # their session has ended
    assert sign_in(app.test_client(), EDITOR).status_code == 401
    actions = [action for _, action, target in audited(app) if target == EDITOR]
    assert actions == ["operator.role", "operator.remove", "sign_in.failed"]
    assert post(owner, "/admin/operators/999/remove").status_code == 404
    bad = post(owner, f"/admin/operators/{owner_id}/role", {"role": "king"})
    assert bad.status_code == 400 and "role: must be owner or editor" in text(bad)


def test_the_audit_log_pages_back_through_every_act(app: Flask, owner: FlaskClient) -> None:
    with app.app_context():
        for number in range(120):
            audit.record(audit.Actor("cli:ops"), "digest.send", f"edition:{number}")
        db.session.commit()
    first = text(owner.get("/admin/audit"))
    targets = re.findall(r"<td class=\"wrap\">(edition:\d+)</td>", first)
    assert targets[:2] == ["edition:119", "edition:118"] and len(targets) == 50
    older = re.search(r'<a rel="next" href="([^"]+)"', first)
    assert older
    second = text(owner.get(older[1]))
    assert re.findall(r"<td class=\"wrap\">(edition:\d+)</td>", second)[0] == "edition:69"
    third = text(owner.get(re.search(r'<a rel="next" href="([^"]+)"', second)[1]))
    # The owner's own sign-in is the oldest entry.
    assert "sign_in" in third and 'rel="next"' not in third
    assert owner.get("/admin/audit?before=x").status_code == 400


@with_config(
    SMTP_PASSWORD="pa55word-of-the-relay",
    BOUNCE_WEBHOOK_TOKEN="webhook-token-0123456789",
    SECRET_KEY_FALLBACKS=["an-old-secret-key-0123456789"],
    FEEDS=["https://reader:feedpass@feeds.example/rss"],
)
def test_settings_are_shown_with_every_secret_masked(app: Flask, owner: FlaskClient) -> None:
    page = text(owner.get("/admin/settings"))
    for secret in (
        "pa55word-of-the-relay",
        "webhook-token-0123456789",
        "an-old-secret-key-0123456789",
        "test-secret-key-0123456789",
        "feedpass",
    ):
        assert secret not in page, secret
    assert re.search(r"<code>SMTP_PASSWORD</code></th><td[^>]*>set \(hidden\)</td>", page)
    assert re.search(r"<code>SECRET_KEY_FALLBACKS</code></th><td[^>]*>1 set \(hidden\)", page)
    assert "https://***@feeds.example/rss" in page
    assert re.search(r"<code>BASE_URL</code></th><td[^>]*>https://news.example.test</td>", page)
    assert re.search(r"<code>ADMIN_IDLE_MINUTES</code></th><td[^>]*>30</td>", page)


def test_urls_with_credentials_are_masked_wherever_they_are(app: Flask) -> None:
    app.config["BROKER_URL"] = "redis://:broker-pass@10.0.0.5:6379/0"
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"password": "db-pass"}}
    shown = dict((name, value) for name, value, _ in config.effective(app))
    assert shown["BROKER_URL"] == "redis://***@10.0.0.5:6379/0"
    assert "db-pass" not in shown["SQLALCHEMY_ENGINE_OPTIONS"]
    assert set(shown) == set(config.DEFAULTS)


def test_a_url_password_holding_an_at_sign_is_masked_whole(app: Flask) -> None:
    # redis-py and urllib read the password up to the authority's last "@"; SQLAlchemy reads
    # one holding a "/" up to the first.
    app.config["BROKER_URL"] = "redis://:s3cr@tpass@redis.internal:6379/0"
    app.config["RATELIMIT_STORAGE_URI"] = "redis://limits:l1m@ts@redis.internal:6379/1"
    app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://news:db/pass@db.internal/news"
    app.config["FEEDS"] = ["https://reader:f@@dpass@feeds.example/rss?from=@desk"]
    shown = dict((name, value) for name, value, _ in config.effective(app))
    assert shown["BROKER_URL"] == "redis://***@redis.internal:6379/0"
    assert shown["RATELIMIT_STORAGE_URI"] == "redis://***@redis.internal:6379/1"
    assert shown["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://***@db.internal/news"
    assert shown["FEEDS"] == "https://***@feeds.example/rss?from=@desk"
    for secret in ("tpass", "ts@", "dpass", "db/pass"):
        assert not any(secret in value for value in shown.values()), secret


def test_an_api_token_is_shown_once_and_can_be_revoked(app: Flask, owner: FlaskClient) -> None:
    created = post(
        owner, "/admin/api-tokens", {"name": "CMS", "scope": "read"}, "/admin/api-tokens"
    )
    assert created.status_code == 201
    secret = re.search(r'<code class="secret" id="new-secret">(nl_[^<]+)</code>', text(created))
    assert secret
    assert created.headers["Cache-Control"] == "no-store"
    listing = text(owner.get("/admin/api-tokens"))
    assert secret[1] not in listing and "CMS" in listing
    with app.app_context():
        token = api_tokens.verify(secret[1])
        assert token is not None and token.scope == "read"
        token_id = token.id
    assert post(owner, f"/admin/api-tokens/{token_id}/revoke").status_code == 303
    with app.app_context():
        assert api_tokens.verify(secret[1]) is None
    assert [(a, t) for _, a, t in audited(app) if a.startswith("api_token")] == [
        ("api_token.create", f"CMS#{token_id}"),
        ("api_token.revoke", f"CMS#{token_id}"),
    ]
    nameless = post(owner, "/admin/api-tokens", {"name": " ", "scope": "send"}, "/admin/api-tokens")
    assert nameless.status_code == 400
    wrong_scope = post(
        owner, "/admin/api-tokens", {"name": "X", "scope": "all"}, "/admin/api-tokens"
    )
    assert wrong_scope.status_code == 400 and "Not a valid choice" in text(wrong_scope)


def test_the_bounce_log_lists_reports_with_their_kind(app: Flask, owner: FlaskClient) -> None:
    now = utcnow()
    with app.app_context():
        reader = Subscriber(email="gone@example.org", status="bounced")
        db.session.add(reader)
        db.session.flush()
        for number, kind in enumerate(["hard", "soft", "policy", "complaint"] * 15):
            db.session.add(
                BounceEvent(
                    subscriber_id=reader.id if number == 59 else None,
                    kind=kind,
                    status="5.1.1" if kind == "hard" else None,
                    diagnostic=f"report {number}",
                    source="webhook",
                    fingerprint=f"f{number}",
                    received_at=now - timedelta(minutes=60 - number),
                )
            )
        db.session.commit()
    first = text(owner.get("/admin/bounces"))
    assert first.index("report 59") < first.index("report 58")
    assert first.count("<tr>") - 1 == 50  # the header row, then 50 reports
    assert '<span class="state state-complaint">complaint</span>' in first
    assert "gone@example.org" in first  # the reader, when still on the list
    older = re.search(r'<a rel="next" href="([^"]+)"', first)
    assert older and "report 9" in text(owner.get(older[1]))


def test_a_suppression_look_up_says_that_and_nothing_more(app: Flask, owner: FlaskClient) -> None:
    with app.app_context():
        db.session.add(Suppression(address_hash=address_hash("gone@example.org"), reason="bounced"))
        db.session.add(Subscriber(email="here@example.org", status="active"))
        db.session.commit()
    suppressed = post(owner, "/admin/bounces", {"email": " Gone@Example.org "}, "/admin/bounces")
    assert suppressed.status_code == 200
    assert "gone@example.org is suppressed (bounced) since" in text(suppressed)
    # A reader on the list and an address never seen get the same words.
    reader = text(post(owner, "/admin/bounces", {"email": "here@example.org"}, "/admin/bounces"))
    stranger = text(post(owner, "/admin/bounces", {"email": "who@example.org"}, "/admin/bounces"))
    answer = re.compile(r'<p id="lookup-answer"[^>]*>\s*(.*?)\s*</p>', re.S)
    assert answer.search(reader)[1] == "here@example.org is not suppressed."
    assert answer.search(stranger)[1] == "who@example.org is not suppressed."
    bad = post(owner, "/admin/bounces", {"email": "not an address"}, "/admin/bounces")
    assert bad.status_code == 400 and 'id="lookup-answer"' not in text(bad)
    # The address went in the body, never in a URL.
    assert 'method="post" action="/admin/bounces"' in text(bad)


def test_an_editor_sees_the_bounce_log(app: Flask, client: FlaskClient) -> None:
    add_operator(app, EDITOR, "editor")
    sign_in(client, EDITOR)
    assert client.get("/admin/bounces").status_code == 200
    found = post(client, "/admin/bounces", {"email": "who@example.org"}, "/admin/bounces")
    assert found.status_code == 200
    assert "Operators" not in text(client.get("/admin/bounces")).split("</nav>")[0]
