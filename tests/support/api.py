"""Calling the JSON API in tests: tokens made as the CLI makes them, calls with one of them."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from newsletter.extensions import db
from newsletter.operators import api_tokens

PROBLEM = "application/problem+json"


def make_api_token(app: Flask, scope: str, name: str = "CMS") -> tuple[int, str]:
    """A new token of this scope: its id and its secret, as ``api-tokens create`` shows it."""
    with app.app_context():
        token, secret = api_tokens.create(name, scope)
        db.session.commit()
        return token.id, secret


@pytest.fixture
def tokens(app: Flask) -> dict[str, str]:
    """One live token of each scope, by scope."""
    return {scope: make_api_token(app, scope)[1] for scope in ("subscribe", "read", "send")}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def call(
    client: FlaskClient, method: str, path: str, secret: str | None = None, **kwargs: Any
) -> TestResponse:
    """One API call, with this token when given (``json=``, ``query_string=`` and so on)."""
    headers = {**kwargs.pop("headers", {}), **(bearer(secret) if secret else {})}
    return client.open(path, method=method, headers=headers, **kwargs)


def assert_problem(response: TestResponse, status: int) -> dict[str, Any]:
    """The answer is problem+json (RFC 9457) with this status; returns its members."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert isinstance(body, dict)
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def bad_fields(response: TestResponse) -> dict[str, str]:
    """A validation problem's bad fields: pointer (or query parameter) -> detail."""
    body = assert_problem(response, 422)
    assert body["type"].endswith("/api/v1/problems/validation")
    return {error.get("pointer") or error["parameter"]: error["detail"] for error in body["errors"]}
