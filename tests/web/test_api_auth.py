"""Who may call the API: a live bearer token of a scope the endpoint admits, and nobody else."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select

from newsletter.db.models import ApiToken, AuditEvent
from newsletter.extensions import db, limiter
from newsletter.operators import api_tokens
from tests.conftest import with_config
from tests.support.api import assert_problem, call, make_api_token
from tests.support.digest_helpers import add_article

SCOPES = ("subscribe", "read", "send")
ADDRESS = {"email": "reader@example.com"}
# Every guarded endpoint: a call that passes its checks, and the scopes it admits.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("POST", "/api/v1/subscriptions", {**ADDRESS, "consent": True}, {"subscribe"}),
    ("POST", "/api/v1/readers/lookup", ADDRESS, {"read"}),
    ("POST", "/api/v1/readers/export", ADDRESS, {"read"}),
    ("POST", "/api/v1/readers/unsubscribe", ADDRESS, {"send"}),
    (
        "POST",
        "/api/v1/articles",
        {"articles": [{"url": "https://ledger.example/a", "title": "A", "category": "Politics"}]},
        {"send"},
    ),
    ("GET", "/api/v1/editions", None, {"read", "send"}),
    ("GET", "/api/v1/editions/1", None, {"read", "send"}),
    ("GET", "/api/v1/editions/preview", None, {"read", "send"}),
    ("POST", "/api/v1/editions", {"frequency": "daily"}, {"send"}),
    ("POST", "/api/v1/alerts", {"article_id": 1}, {"send"}),
]
PUBLIC = {"/api/v1/openapi.json", "/api/v1/problems/<name>"}


def _audit_rows(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def _flask_path(path: str) -> str:
    return re.sub(r"/\d+$", "/<int(min=1, max=2147483647):edition_id>", path)


def test_the_scope_table_covers_every_guarded_route(app: Flask) -> None:
    routes = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    listed = {(method, _flask_path(path)) for method, path, _, _ in ENDPOINTS}
    assert {route for route in routes if route[1] not in PUBLIC} == listed
    # And the scopes each view admits are the table's.
    for method, path, _, scopes in ENDPOINTS:
        adapter = app.url_map.bind("localhost")
        endpoint, _ = adapter.match(path, method=method)
        assert set(app.view_functions[endpoint].api_scopes) == scopes, path


@pytest.mark.parametrize(("method", "path", "body", "scopes"), ENDPOINTS)
def test_each_endpoint_refuses_the_other_scopes_and_changes_nothing(
    app: Flask,
    client: FlaskClient,
    tokens: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    scopes: set[str],
) -> None:
    add_article(app, "Something happened", "Politics")
    for scope in sorted(set(SCOPES) - scopes):
        response = call(client, method, path, tokens[scope], json=body)
        problem = assert_problem(response, 403)
        assert f"scope is {scope}" in problem["detail"]
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ") and 'error="insufficient_scope"' in challenge
        assert _audit_rows(app) == 0
    for scope in sorted(scopes):
        response = call(client, method, path, tokens[scope], json=body)
        assert response.status_code not in (401, 403), (scope, response.get_json())


@pytest.mark.parametrize(("method", "path", "body", "scopes"), ENDPOINTS)
def test_each_endpoint_refuses_an_anonymous_caller_and_a_revoked_token(
    app: Flask,
    client: FlaskClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    scopes: set[str],
) -> None:
    response = call(client, method, path, json=body)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="newsletter"'
    for scope in scopes:
        token_id, secret = make_api_token(app, scope)
        with app.app_context():
            api_tokens.revoke(token_id)
            db.session.commit()
        response = call(client, method, path, secret, json=body)
        assert_problem(response, 401)
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert _audit_rows(app) == 0


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer nl_00000000_not-a-token-we-made",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer " + "x" * 5000,
        "bearer\tnl_",
        "Bearer nl_\u00e9\u0000",
    ],
    ids=["unknown", "empty", "basic", "huge", "tab", "control"],
)
def test_anything_but_a_live_token_is_refused(
    client: FlaskClient, tokens: dict[str, str], authorization: str
) -> None:
    response = client.get("/api/v1/editions", headers={"Authorization": authorization})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="newsletter"')


def test_the_secret_alone_is_not_the_header(client: FlaskClient, tokens: dict[str, str]) -> None:
    assert_problem(client.get("/api/v1/editions", headers={"Authorization": tokens["read"]}), 401)
    # Scheme names are case-insensitive (RFC 9110 11.1).
    assert (
        client.get(
            "/api/v1/editions", headers={"Authorization": "bearer " + tokens["read"]}
        ).status_code
        == 200
    )


def test_a_revoked_token_is_refused_on_its_next_call(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner
) -> None:
    token_id, secret = make_api_token(app, "read")
    assert call(client, "GET", "/api/v1/editions", secret).status_code == 200

    result = runner.invoke(args=["api-tokens", "revoke", str(token_id)])
    assert result.exit_code == 0, result.output

    response = call(client, "GET", "/api/v1/editions", secret)
    problem = assert_problem(response, 401)
    assert "revoked" in problem["detail"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_call_notes_when_the_token_was_last_used(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner, tokens: dict[str, str]
) -> None:
    assert "last used never" in runner.invoke(args=["api-tokens", "list"]).output
    call(client, "GET", "/api/v1/editions", tokens["read"])
    with app.app_context():
        used = db.session.scalars(select(ApiToken.last_used_at).where(ApiToken.scope == "read"))
        assert next(iter(used)) is not None


def test_acts_are_audited_under_the_tokens_name_and_id(app: Flask, client: FlaskClient) -> None:
    token_id, secret = make_api_token(app, "subscribe", name="Site CMS")
    call(client, "POST", "/api/v1/subscriptions", secret, json={**ADDRESS, "consent": True})
    with app.app_context():
        event = db.session.scalars(select(AuditEvent)).one()
        assert event.actor == f"api:Site CMS#{token_id}"
        assert event.action == "reader.subscribe"
        assert "reader@example.com" not in event.target  # the address's hash, as suppression keeps
        assert event.ip == "127.0.0.1"


def test_the_api_sets_no_cookie_and_needs_no_csrf_token(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    # A browser that has our session cookie (the signup form sets one) calls the API.
    client.get("/subscribe")
    assert client.get_cookie("session") is not None
    for method, path, body in [
        ("POST", "/api/v1/subscriptions", {**ADDRESS, "consent": True}),
        ("GET", "/api/v1/editions", None),
        ("GET", "/api/v1/nowhere", None),
    ]:
        scope = "subscribe" if method == "POST" else "read"
        response = call(client, method, path, tokens[scope], json=body)
        assert response.status_code in (200, 202, 404)
        assert "Set-Cookie" not in response.headers, path
    anonymous = client.get("/api/v1/openapi.json")
    assert "Set-Cookie" not in anonymous.headers


def test_the_signup_form_still_needs_its_csrf_token(client: FlaskClient) -> None:
    response = client.post("/subscribe", data={"email": "reader@example.com", "consent": "y"})
    assert response.status_code == 400
    assert "text/html" in response.content_type


@with_config(API_RATE_LIMIT="3 per minute")
def test_each_token_has_its_own_rate_limit(app: Flask, client: FlaskClient) -> None:
    _, first = make_api_token(app, "read", name="CMS")
    _, second = make_api_token(app, "read", name="Shop")
    for _ in range(3):
        assert call(client, "GET", "/api/v1/editions", first).status_code == 200
    # The budget is the token's, across endpoints.
    response = call(client, "GET", "/api/v1/editions/preview", first)
    problem = assert_problem(response, 429)
    assert "Retry-After" in problem["detail"]
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert "Set-Cookie" not in response.headers
    # Another token from the same address still has its whole budget.
    for _ in range(3):
        assert call(client, "GET", "/api/v1/editions", second).status_code == 200
    assert_problem(call(client, "GET", "/api/v1/editions", second), 429)


def test_the_api_rate_limit_is_a_checked_setting(tmp_path: Any) -> None:
    from newsletter import create_app
    from newsletter.errors import ConfigError
    from tests.conftest import base_config

    with pytest.raises(ConfigError, match="NEWSLETTER_API_RATE_LIMIT: must be limits like"):
        create_app({**base_config("sqlite://", tmp_path), "API_RATE_LIMIT": "lots"})
    with pytest.raises(ConfigError, match="NEWSLETTER_API_MAX_BYTES: must be a whole number"):
        create_app({**base_config("sqlite://", tmp_path), "API_MAX_BYTES": 0})


@with_config(API_RATE_LIMIT="1 per hour")
def test_the_429_says_when_to_come_back_even_without_the_rate_limit_headers(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As with RATELIMIT_HEADERS_ENABLED=false (which the one limiter of the process takes
    # from the first app that enabled it, so it is switched off here directly).
    monkeypatch.setattr(limiter, "_headers_enabled", False)
    _, secret = make_api_token(app, "read")
    assert "X-RateLimit-Limit" not in call(client, "GET", "/api/v1/editions", secret).headers
    response = call(client, "GET", "/api/v1/editions", secret)
    assert_problem(response, 429)
    assert 3500 <= int(response.headers["Retry-After"]) <= 3601
