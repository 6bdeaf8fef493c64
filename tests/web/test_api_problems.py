"""Every error under /api/ is application/problem+json (RFC 9457); the pages keep their HTML."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from newsletter.web.api import problems
from tests.conftest import with_config
from tests.support.api import assert_problem, bad_fields, call


@pytest.mark.parametrize(
    "path", ["/api/v1/nowhere", "/api/v1", "/api/v1/", "/api/v2/editions", "/api/v1/editions/x"]
)
def test_an_unknown_address_is_a_404_problem(client: FlaskClient, path: str) -> None:
    problem = assert_problem(client.get(path), 404)
    assert problem["type"] == "about:blank"
    assert problem["title"] == "Not Found"
    assert "openapi.json" in problem["detail"]


def test_a_wrong_method_is_a_405_problem_with_allow(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    response = call(client, "PUT", "/api/v1/editions", tokens["send"], json={})
    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("frequency=daily", "application/x-www-form-urlencoded", 415),
        ('{"frequency": "daily"}', "text/plain", 415),
        ("", None, 415),
        ("{", "application/json", 400),
        ("", "application/json", 400),
        (b"\xff\xfe{}", "application/json", 400),
        ('{"frequency": NaN}', "application/json", 400),
        ('{"frequency": "daily\\ud800"}', "application/json", 400),
        ('{"n": ' + "9" * 5000 + "}", "application/json", 400),
        ("[" * 50_000 + "]" * 50_000, "application/json", 400),
        ('["daily"]', "application/json", 422),
        ("null", "application/json", 422),
    ],
    ids=[
        "form", "text", "no-type", "truncated", "empty", "not-utf8", "nan", "surrogate",
        "huge-number", "deep", "array", "null",
    ],
)  # fmt: skip
def test_a_body_that_is_not_a_json_object_is_refused(
    client: FlaskClient,
    tokens: dict[str, str],
    data: Any,
    content_type: str | None,
    status: int,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = call(client, "POST", "/api/v1/editions", tokens["send"], data=data, headers=headers)
    problem = assert_problem(response, status)
    if status == 400:
        assert problem["type"].endswith("/api/v1/problems/malformed-body")
    if status == 422:
        assert bad_fields(response) == {"#": "must be a JSON object"}


def test_a_json_media_type_with_a_suffix_is_json(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    response = call(
        client,
        "POST",
        "/api/v1/editions",
        tokens["send"],
        data='{"frequency": "hourly"}',
        headers={"Content-Type": "application/merge-patch+json; charset=utf-8"},
    )
    assert bad_fields(response) == {"#/frequency": "must be one of daily, weekly"}


def test_a_validation_problem_lists_each_field_with_a_pointer_and_detail(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    response = call(
        client, "POST", "/api/v1/subscriptions", tokens["subscribe"], json={"email": 3, "a/b": 1}
    )
    problem = assert_problem(response, 422)
    assert problem["title"] == "The request's fields are not valid"
    assert problem["errors"] == [
        {"pointer": "#/a~1b", "detail": "unknown field (the fields are email, name, topics, "
         "frequency, language, consent)"},
        {"pointer": "#/email", "detail": "must be a string, not number"},
        {"pointer": "#/consent", "detail": "missing"},
    ]  # fmt: skip
    assert "#/email: must be a string" in problem["detail"]


@with_config(MAX_CONTENT_LENGTH=100)
def test_a_body_larger_than_the_api_accepts_is_a_413_problem(
    app: Flask, client: FlaskClient, tokens: dict[str, str]
) -> None:
    app.config["API_MAX_BYTES"] = 50
    response = call(
        client, "POST", "/api/v1/editions", tokens["send"], json={"frequency": "daily" + " " * 60}
    )
    assert_problem(response, 413)


def test_a_server_error_is_a_problem_without_a_trace(app: Flask, tokens: dict[str, str]) -> None:
    app.testing = False  # as in production: the error is answered, not raised into the test

    def broken(*_: Any) -> Any:
        raise RuntimeError("the database is on fire")

    app.view_functions["api.editions"] = broken
    response = call(app.test_client(), "GET", "/api/v1/editions", tokens["read"])
    problem = assert_problem(response, 500)
    assert "on fire" not in response.get_data(as_text=True)
    assert problem["title"] == "Internal Server Error"


def test_each_problem_type_answers_with_what_it_means(client: FlaskClient) -> None:
    for name, (status, title, _) in problems.TYPES.items():
        uri = f"https://news.example.test/api/v1/problems/{name}"
        response = client.get(urlsplit(uri).path)
        assert response.status_code == 200
        described = response.get_json()
        assert (described["type"], described["title"], described["status"]) == (uri, title, status)
    assert_problem(client.get("/api/v1/problems/nonsense"), 404)


def test_the_readers_pages_keep_their_html_errors(client: FlaskClient) -> None:
    for response in (client.get("/nowhere"), client.put("/subscribe"), client.get("/apix")):
        assert response.status_code in (404, 405)
        assert response.mimetype == "text/html"
        assert "<h1>" in response.get_data(as_text=True)
