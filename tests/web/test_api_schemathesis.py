"""The API against its own OpenAPI document, with generated requests (schemathesis).

Requests valid and invalid by the document go to the app in-process, with a token of each
scope the operation admits and one of a scope it does not: no answer may be a 5xx, and each
must match the document (status, media type, headers, body). Requests the document calls
invalid must be refused. Bounded: 30 generated requests per operation, no coverage phase.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.api import bearer, make_api_token
from tests.support.digest_helpers import add_article, add_reader

SCOPES = ("subscribe", "read", "send")
EXAMPLES = 30  # per operation and mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        # The token is ours to give (the tests of auth try the wrong ones).
        "generation": {"mode": "all", "max-examples": EXAMPLES, "with-security-parameters": False},
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    }
)


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    # Generated calls by the hundred within a minute: the budget would run out (and the
    # 429 answers are checked elsewhere).
    return {"API_RATE_LIMIT": "100000 per minute", "CONFIRM_MAILS_PER_DAY": 1000}


def _schema(app: Flask) -> Any:
    """The document as the app serves it, over a database with something in it."""
    add_article(app, "Parliament votes", "Politics")
    add_article(app, "Markets rally", "Business")
    add_reader(app, "reader@example.com", ("politics", "business"))
    add_reader(app, "weekly@example.com", ("culture",), frequency="weekly")
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=CONFIG)


def _exercise(operation: Any, mode: GenerationMode, secrets: dict[str, str]) -> None:
    """Generated requests to one operation, each with the token of every admitted scope and
    then with one of a scope it does not admit (a documented 403)."""
    admitted = operation.definition.raw.get("x-scopes", [])
    chosen = [*admitted, *[scope for scope in SCOPES if scope not in admitted][:1]]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure can be replayed
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case: Any) -> None:
        for scope in chosen:
            response = case.call(headers=bearer(secrets[scope]))
            case.validate_response(response, checks=CHECKS)
            if admitted and scope not in admitted and mode is GenerationMode.POSITIVE:
                assert response.status_code == 403, (operation.label, response.status_code)

    exercise()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_to_its_document(app: Flask, mode: GenerationMode) -> None:
    secrets = {scope: make_api_token(app, scope)[1] for scope in SCOPES}
    operations = [result.ok() for result in _schema(app).get_all_operations()]
    # Every operation but the document itself, which schemathesis leaves out.
    assert len(operations) == 11, sorted(operation.label for operation in operations)
    import time

    for operation in operations:
        t = time.perf_counter()
        _exercise(operation, mode, secrets)
        print(operation.label, round(time.perf_counter() - t, 2))
