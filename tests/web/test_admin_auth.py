"""Who may use the console: every route refuses anonymous callers and owner-only routes
refuse editors; sign-in is limited and says the same for any miss; sessions end."""

from __future__ import annotations

import html
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.routing import Rule
from werkzeug.routing.converters import NumberConverter

from newsletter.db.models import AuditEvent
from newsletter.extensions import db
from newsletter.operators import accounts
from newsletter.web.admin.auth import ACCESS, SEEN, safe_next
from tests.conftest import with_config, without_nonce
from tests.support.console import EDITOR, OWNER, PASSWORD, add_operator, csrf_of, post, sign_in

# The console views that need no signed-in operator, and the ones only owners may use; a
# new route is covered by the walks below without being listed, and must say which it is.
PUBLIC = {"admin.sign_in"}
OWNER_ONLY_AT_LEAST = {
    "admin.reader_export",
    "admin.reader_erase",
    "admin.operators",
    "admin.operator_add",
    "admin.operator_role",
    "admin.operator_remove",
    "admin.audit_log",
    "admin.settings",
    "admin.tokens",
    "admin.token_create",
    "admin.token_revoke",
}


def console_rules(app: Flask) -> list[Rule]:
    rules = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/admin")]
    assert len(rules) > 10, "the console's routes are not registered"
    return rules


def example_path(rule: Rule) -> str:
    """The rule's path with a made-up value for each of its arguments."""
    path = rule.rule
    for name in rule.arguments:
        value = "1" if isinstance(rule._converters[name], NumberConverter) else "x"
        path = re.sub(rf"<(?:[^:<>]+:)?{name}>", value, path)
    return path


def methods(rule: Rule) -> list[str]:
    return sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


def access(app: Flask, rule: Rule) -> str:
    return str(getattr(app.view_functions[rule.endpoint], ACCESS, "unguarded"))


@with_config(WTF_CSRF_ENABLED=False)  # so that the role check, not the CSRF check, refuses
def test_every_console_route_sends_an_anonymous_caller_to_sign_in(
    app: Flask, client: FlaskClient
) -> None:
    add_operator(app, OWNER, "owner")
    for rule in console_rules(app):
        if rule.endpoint in PUBLIC:
            assert access(app, rule) == "public"
            continue
        # Every other view goes through ``require``: one without it would be open to all.
        assert access(app, rule) in ("signed-in", "owner", "editor"), rule.endpoint
        for method in methods(rule):
            answer = client.open(example_path(rule), method=method, data={"email": "x@y.z"})
            assert answer.status_code == 302, (rule.endpoint, method, answer.status_code)
            assert answer.headers["Location"].startswith("/admin/sign-in"), rule.endpoint
    with app.app_context():
        # Nobody acted.
        assert db.session.scalars(select(AuditEvent.action)).all() == []


@with_config(WTF_CSRF_ENABLED=False)
def test_owner_only_routes_refuse_an_editor(app: Flask, client: FlaskClient) -> None:
    add_operator(app, OWNER, "owner")
    add_operator(app, EDITOR, "editor")
    assert sign_in(client, EDITOR).status_code == 303
    owner_only = {rule.endpoint for rule in console_rules(app) if access(app, rule) == "owner"}
    assert owner_only >= OWNER_ONLY_AT_LEAST
    for rule in console_rules(app):
        for method in methods(rule):
            if rule.endpoint in owner_only:
                answer = client.open(example_path(rule), method=method, data={"role": "owner"})
                assert answer.status_code == 403, (rule.endpoint, method)
                assert "Not for your role" in answer.get_data(as_text=True)
            elif method == "GET" and rule.endpoint not in PUBLIC:
                # An editor may open every other page (a made-up id may be missing: 404,
                # a page may want parameters: 400), and none of them fails.
                answer = client.get(example_path(rule))
                assert answer.status_code != 403 and answer.status_code < 500, (
                    rule.endpoint,
                    answer.status_code,
                )
    with app.app_context():
        editor = accounts.by_email(EDITOR)
        assert editor is not None and editor.role == "editor"
        assert accounts.owners() == 1


def _miss_page(answer: Any, typed: str) -> bytes:
    body: bytes = without_nonce(answer.data)
    body = re.sub(rb'name="csrf_token"[^>]*value="[^"]+"', b"csrf", body)
    return body.replace(typed.encode(), b"ADDRESS")


def test_an_unknown_account_and_a_wrong_password_get_the_same_answer(
    app: Flask, client: FlaskClient
) -> None:
    add_operator(app, OWNER, "owner")
    wrong = sign_in(client, OWNER, "not-the-password-at-all")
    unknown = sign_in(client, "nobody@ledger.example", PASSWORD)
    malformed = sign_in(client, "not an address", PASSWORD)
    assert wrong.status_code == unknown.status_code == malformed.status_code == 401
    assert _miss_page(wrong, OWNER) == _miss_page(unknown, "nobody@ledger.example")
    assert _miss_page(wrong, OWNER) == _miss_page(malformed, "not an address")
    assert "That email and password do not match an account." in wrong.get_data(as_text=True)
    with app.app_context():
        failures = db.session.scalars(
            select(AuditEvent.target).where(AuditEvent.action == "sign_in.failed")
        ).all()
    # What is not an address may be a password typed in the wrong box: it is not kept.
    assert failures == [OWNER, "nobody@ledger.example", "(not an address)"]


@pytest.mark.parametrize(
    "typed", ["a\x00@x.example", "ann\x01@ledger.example", "correct horse battery", "x" * 300]
)
def test_a_failed_sign_in_keeps_only_an_address_in_the_audit_log(
    app: Flask, client: FlaskClient, typed: str
) -> None:
    add_operator(app, OWNER, "owner")
    # A NUL would be refused by PostgreSQL in the audit log's row: a 500, not a 401.
    answer = sign_in(client, typed, PASSWORD)
    assert answer.status_code == 401
    assert "That email and password do not match an account." in answer.get_data(as_text=True)
    assert sign_in(client, " Owner@Ledger.Example ", "wrong-password-here").status_code == 401
    with app.app_context():
        failures = db.session.scalars(
            select(AuditEvent.target)
            .where(AuditEvent.action == "sign_in.failed")
            .order_by(AuditEvent.id)
        ).all()
    assert failures == ["(not an address)", OWNER]


@with_config(RATELIMIT_SIGN_IN_ACCOUNT="3 per minute", RATELIMIT_SIGN_IN="100 per minute")
def test_sign_in_is_limited_per_account_known_or_not(app: Flask, client: FlaskClient) -> None:
    add_operator(app, OWNER, "owner")
    add_operator(app, EDITOR, "editor")
    for address in (OWNER, "nobody@ledger.example"):
        for _ in range(3):
            assert sign_in(client, address, "wrong-password-here").status_code == 401
        # Over the limit even the right password is refused, with the same words for both.
        limited = sign_in(client, address, PASSWORD)
        assert limited.status_code == 429
        assert "Too many attempts to sign in." in limited.get_data(as_text=True)
        assert "Retry-After" in limited.headers
    # Another account from the same network still signs in, and differently typed
    # (upper case) the limited one is still limited.
    assert sign_in(client, EDITOR).status_code == 303
    assert sign_in(client, OWNER.upper()).status_code == 429


@with_config(RATELIMIT_SIGN_IN="3 per minute", RATELIMIT_SIGN_IN_ACCOUNT="100 per minute")
def test_sign_in_is_limited_per_ip(app: Flask, client: FlaskClient) -> None:
    add_operator(app, OWNER, "owner")
    for number in range(3):
        assert sign_in(client, f"guess{number}@ledger.example", "x" * 12).status_code == 401
    assert sign_in(client, OWNER).status_code == 429
    # From another network the same account signs in; and there, successes do not count.
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "198.51.100.9"
    for _ in range(4):
        assert sign_in(other, OWNER).status_code == 303


def test_a_signed_in_session_has_safe_cookies_and_its_acts_are_audited(
    app: Flask, client: FlaskClient
) -> None:
    add_operator(app, OWNER, "owner")
    answer = sign_in(client, OWNER)
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/"
    cookie = answer.headers["Set-Cookie"]
    # BASE_URL is https in the tests: the cookie never travels in clear.
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    page = client.get("/admin/")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert post(client, "/admin/sign-out").status_code == 303
    assert client.get("/admin/").status_code == 302
    with app.app_context():
        rows = db.session.execute(
            select(AuditEvent.actor, AuditEvent.action).order_by(AuditEvent.id)
        ).all()
    assert rows == [(f"operator:{OWNER}", "sign_in"), (f"operator:{OWNER}", "sign_out")]


def test_a_cookie_copied_before_sign_out_is_refused_after_it(app: Flask) -> None:
    add_operator(app, OWNER, "owner")
    browser, copy = app.test_client(), app.test_client()
    assert sign_in(browser, OWNER).status_code == 303
    cookie = browser.get_cookie("session")
    assert cookie is not None
    # The cookie as a shared profile, a proxy's log or a HAR file keeps it.
    copy.set_cookie("session", cookie.value)
    assert copy.get("/admin/settings").status_code == 200
    assert post(browser, "/admin/sign-out").status_code == 303
    replayed = copy.get("/admin/settings")
    assert replayed.status_code == 302
    assert replayed.headers["Location"].startswith("/admin/sign-in")
    assert copy.get("/admin/api-tokens").status_code == 302
    with app.app_context():
        detail = db.session.scalar(select(AuditEvent.detail).where(AuditEvent.action == "sign_out"))
    assert detail == {"sessions": "every session of this account ended"}
    # Signing in again works, and the page says what signing out does.
    assert sign_in(browser, OWNER).status_code == 303
    page = browser.get("/admin/").get_data(as_text=True)
    assert 'title="Ends every session of your account, on every device"' in page


@with_config(BASE_URL="http://127.0.0.1:5000")
def test_over_plain_http_the_cookie_cannot_be_secure(app: Flask, client: FlaskClient) -> None:
    add_operator(app, OWNER, "owner")
    cookie = sign_in(client, OWNER).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("/admin/readers?q=ann", True),
        ("/admin", True),
        ("/admin/", True),
        ("https://evil.example/admin/", False),
        ("//evil.example/admin/", False),
        ("/\\evil.example", False),
        ("/admin/../subscribe", False),
        # Percent-encoded dots are dots to a browser: these leave the console too.
        ("/admin/%2e%2e/%2e%2e//evil.example", False),
        ("/admin/%2E%2E/subscribe", False),
        ("/admin/.%2e/subscribe", False),
        ("/admin/readers%2f..%2f..%2fsubscribe", False),
        ("/admin/readers?q=%2e%2e", True),
        ("/adminx", False),
        ("/subscribe", False),
        ("javascript:alert(1)", False),
        ("/admin/\nSet-Cookie: x", False),
        ("", False),
    ],
)
def test_after_sign_in_only_console_paths_are_followed(value: str, safe: bool) -> None:
    assert (safe_next(value) == value) is safe


def next_of(url: str) -> str:
    parts = urlsplit(url)
    assert parts.path == "/admin/sign-in"
    return parse_qs(parts.query)["next"][0]


def test_sign_in_returns_to_the_page_asked_for_and_nowhere_else(
    app: Flask, client: FlaskClient
) -> None:
    add_operator(app, OWNER, "owner")
    asked = client.get("/admin/readers?q=ann")
    assert asked.status_code == 302
    location = asked.headers["Location"]
    assert next_of(location) == "/admin/readers?q=ann"
    page = client.get(location).get_data(as_text=True)
    # The form posts back to where it came from, the next page included.
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page)[1])
    assert next_of(action) == "/admin/readers?q=ann"
    data = {"csrf_token": csrf_of(page), "email": OWNER, "password": PASSWORD}
    answer = client.post(action, data=data)
    assert answer.headers["Location"] == "/admin/readers?q=ann"
    post(client, "/admin/sign-out")
    page = client.get("/admin/sign-in").get_data(as_text=True)
    data["csrf_token"] = csrf_of(page)
    answer = client.post("/admin/sign-in?next=//evil.example/admin/", data=data)
    assert answer.headers["Location"] == "/admin/"


def test_a_new_password_ends_every_other_session(app: Flask) -> None:
    add_operator(app, OWNER, "owner")
    laptop, phone = app.test_client(), app.test_client()
    assert sign_in(laptop, OWNER).status_code == 303
    assert sign_in(phone, OWNER).status_code == 303
    new = "a-brand-new-passphrase"
    changed = post(
        laptop,
        "/admin/account",
        {"current": PASSWORD, "new": new, "repeat": new},
        page="/admin/account",
    )
    assert changed.status_code == 303
    # The laptop, where it was changed, stays signed in; the phone is signed out.
    assert laptop.get("/admin/").status_code == 200
    assert phone.get("/admin/").headers["Location"].startswith("/admin/sign-in")
    assert sign_in(phone, OWNER).status_code == 401
    assert sign_in(phone, OWNER, new).status_code == 303
    with app.app_context():
        actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert "operator.password" in actions


def test_the_wrong_current_password_changes_nothing(app: Flask, client: FlaskClient) -> None:
    add_operator(app, OWNER, "owner")
    sign_in(client, OWNER)
    new = "a-brand-new-passphrase"
    answer = post(
        client,
        "/admin/account",
        {"current": "not-my-password", "new": new, "repeat": new},
        page="/admin/account",
    )
    assert answer.status_code == 400
    assert "That is not your current password." in answer.get_data(as_text=True)
    assert client.get("/admin/").status_code == 200
    with app.app_context():
        owner = accounts.by_email(OWNER)
        assert owner is not None and accounts.check(owner, PASSWORD)


@with_config(RATELIMIT_SIGN_IN_ACCOUNT="3 per minute")
def test_current_password_guesses_are_limited_per_account(app: Flask) -> None:
    add_operator(app, OWNER, "owner")
    add_operator(app, EDITOR, "editor")
    # Whoever holds a copy of the session guesses at the password, from two browsers.
    laptop, phone, editor = app.test_client(), app.test_client(), app.test_client()
    for client in (laptop, phone):
        assert sign_in(client, OWNER).status_code == 303
    assert sign_in(editor, EDITOR).status_code == 303
    new = "a-brand-new-passphrase"

    def change(client: FlaskClient, current: str, repeat: str = new) -> Any:
        data = {"current": current, "new": new, "repeat": repeat}
        return post(client, "/admin/account", data, page="/admin/account")

    # A form mistake other than the password does not count.
    assert change(laptop, PASSWORD, "a-different-passphrase").status_code == 400
    for client in (laptop, phone, laptop):
        assert change(client, "not-my-password").status_code == 400
    limited = change(phone, PASSWORD)
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert "Too many wrong passwords." in limited.get_data(as_text=True)
    with app.app_context():
        owner = accounts.by_email(OWNER)
        assert owner is not None and accounts.check(owner, PASSWORD)
    # Another account is not limited by them, and viewing the page is not limited.
    assert laptop.get("/admin/account").status_code == 200
    assert change(editor, PASSWORD).status_code == 303


def test_a_session_idle_too_long_ends(app: Flask, client: FlaskClient) -> None:
    add_operator(app, OWNER, "owner")
    sign_in(client, OWNER)
    with client.session_transaction() as session:
        session[SEEN] = int(time.time()) - 29 * 60
    assert client.get("/admin/readers").status_code == 200  # 29 minutes: still on
    with client.session_transaction() as session:
        session[SEEN] = int(time.time()) - 31 * 60
    answer = client.get("/admin/readers")
    assert answer.status_code == 302
    assert next_of(answer.headers["Location"]) == "/admin/readers"
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "You were signed out after 30 minutes without activity." in page
    assert client.get("/admin/").status_code == 302


@with_config(ADMIN_IDLE_MINUTES=5)
def test_the_idle_timeout_is_a_setting(app: Flask, client: FlaskClient) -> None:
    add_operator(app, OWNER, "owner")
    sign_in(client, OWNER)
    with client.session_transaction() as session:
        session[SEEN] = int(time.time()) - 6 * 60
    assert client.get("/admin/").status_code == 302


def test_a_post_without_its_csrf_token_is_refused(app: Flask, client: FlaskClient) -> None:
    add_operator(app, OWNER, "owner")
    sign_in(client, OWNER)
    refused = client.post("/admin/sign-out")
    assert refused.status_code == 400
    assert "This form had expired" in refused.get_data(as_text=True)
    forged = client.post("/admin/operators", data={"email": "x@ledger.example", "role": "owner"})
    assert forged.status_code == 400
    assert client.get("/admin/").status_code == 200  # still signed in: nothing happened
    with app.app_context():
        assert accounts.by_email("x@ledger.example") is None
    # Signing in needs the token too.
    anonymous = app.test_client()
    answer = anonymous.post("/admin/sign-in", data={"email": OWNER, "password": PASSWORD})
    assert answer.status_code == 400
