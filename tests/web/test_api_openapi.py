"""The OpenAPI document says what the API does: every route, method and scope, and valid 3.1."""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import with_config
from tests.support.api import call

METHODS = {"get", "post", "put", "patch", "delete"}


def _document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document: dict[str, Any] = response.get_json()
    return document


def _openapi_path(rule: str) -> str:
    """A Flask rule as OpenAPI writes its path: ``<int(...):edition_id>`` -> ``{edition_id}``."""
    return re.sub(r"<(?:[^:<>]+:)?([A-Za-z_]\w*)>", r"{\1}", rule)


def _routes(app: Flask) -> dict[tuple[str, str], str]:
    """(method, path) -> endpoint of every route under /api/."""
    return {
        (method.lower(), _openapi_path(rule.rule)): rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }


def test_every_route_is_in_the_document_with_its_methods_and_nothing_else(
    app: Flask, client: FlaskClient
) -> None:
    document = _document(client)
    documented = {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }
    assert documented == set(_routes(app))


def test_each_operation_states_the_scopes_its_view_admits(app: Flask, client: FlaskClient) -> None:
    document = _document(client)
    for (method, path), endpoint in _routes(app).items():
        operation = document["paths"][path][method]
        admitted = set(getattr(app.view_functions[endpoint], "api_scopes", ()))
        assert set(operation.get("x-scopes", ())) == admitted, (method, path)
        assert {scope for need in operation["security"] for scope in need["bearer"]} == admitted
        codes = set(operation["responses"])
        if admitted:
            assert {"401", "403", "429"} <= codes, (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "415", "422"} <= codes, (method, path)


def test_the_document_is_valid_openapi_3_1_and_every_reference_resolves(
    client: FlaskClient,
) -> None:
    document = _document(client)
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()
    text = repr(document)
    for kind, name in re.findall(r"'#/components/(\w+)/(\w+)'", text):
        assert name in document["components"][kind], f"#/components/{kind}/{name}"
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["servers"] == [{"url": "https://news.example.test"}]


def test_the_document_lists_the_sites_own_topics(app: Flask, client: FlaskClient) -> None:
    schemas = _document(client)["components"]["schemas"]
    enum = schemas["SubscriptionRequest"]["properties"]["topics"]["items"]["enum"]
    assert enum == ["breaking-news", "politics", "business", "analytics", "technology", "culture"]


@with_config(LANGUAGES=["en", "de", "ar"])
def test_the_document_lists_the_sites_own_languages(app: Flask, client: FlaskClient) -> None:
    schemas = _document(client)["components"]["schemas"]
    assert schemas["SubscriptionRequest"]["properties"]["language"]["enum"] == ["en", "de", "ar"]


def test_the_document_needs_no_token(client: FlaskClient, tokens: dict[str, str]) -> None:
    assert client.get("/api/v1/openapi.json").status_code == 200
    # Nor does a token hurt.
    assert call(client, "GET", "/api/v1/openapi.json", tokens["send"]).status_code == 200
