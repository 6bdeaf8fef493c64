"""The API's OpenAPI 3.1 document (``GET /api/v1/openapi.json``) and its problem types.

Written here as data, beside the views it describes (the schemas in ``schemas``);
tests/web/test_api_openapi.py keeps the two in step (every route and method, and each
operation's scopes). The site's topics and public address are filled in from the settings.
"""

from __future__ import annotations

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue

from newsletter.db.models import Scope
from newsletter.readers import topics
from newsletter.web.api import bp, pagination
from newsletter.web.api.editions import FREQUENCIES, ID_MAX
from newsletter.web.api.problems import TYPES, Problem, type_uri
from newsletter.web.api.schemas import RESPONSES, Schema, json_content, problem, ref, schemas

OBJECT = {"type": "object"}


def _responses(
    ok: Schema, *, body: bool, query: bool, auth: bool, more: dict[str, str] | None = None
) -> Schema:
    found = dict(ok)
    if body:
        found.update(
            {"400": "Malformed", "413": "TooLarge", "415": "Unsupported", "422": "Invalid"}
        )
    if query:
        found["422"] = "Invalid"
    if auth:
        found.update({"401": "Unauthorized", "403": "Forbidden"})
    found["429"] = "TooMany"
    found.update(more or {})
    return {
        code: {"$ref": f"#/components/responses/{value}"} if isinstance(value, str) else value
        for code, value in sorted(found.items())
    }


def _operation(
    operation_id: str,
    summary: str,
    scopes: tuple[Scope, ...],
    ok: Schema,
    *,
    body: str | None = None,
    parameters: list[Schema] | None = None,
    more: dict[str, str] | None = None,
    description: str = "",
) -> Schema:
    found: Schema = {"operationId": operation_id, "summary": summary}
    if description:
        found["description"] = description
    if scopes:
        found["security"] = [{"bearer": [scope.value]} for scope in scopes]
        found["x-scopes"] = [scope.value for scope in scopes]
    else:
        found["security"] = []
    if parameters:
        found["parameters"] = parameters
    if body:
        found["requestBody"] = {"required": True, "content": json_content(ref(body))}
    queried = any(parameter["in"] == "query" for parameter in parameters or [])
    found["responses"] = _responses(
        ok, body=body is not None, query=queried, auth=bool(scopes), more=more
    )
    return found


def _ok(status: str, description: str, schema: str, headers: Schema | None = None) -> Schema:
    found: Schema = {"description": description, "content": json_content(ref(schema))}
    if headers:
        found["headers"] = headers
    return {status: found}


LOCATION = {"Location": {"required": True, "schema": {"type": "string"}}}
NOTHING_NEW = problem("Nothing new to send or preview (type nothing-new).")


def _paths() -> dict[str, Schema]:
    slugs = list(topics.available())
    read_or_send = (Scope.READ, Scope.SEND)
    return {
        "/api/v1/openapi.json": {
            "get": _operation(
                "openapi",
                "This document",
                (),
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": json_content({"type": "object"}),
                    }
                },
            )
        },
        "/api/v1/problems/{name}": {
            "get": _operation(
                "problem_type",
                "What one of the API's problem types means",
                (),
                _ok("200", "The problem type", "ProblemType"),
                parameters=[
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "maxLength": 64},
                    }
                ],
                more={"404": "NotFound"},
            )
        },
        "/api/v1/subscriptions": {
            "post": _operation(
                "subscribe",
                "Start the double opt-in for an address",
                (Scope.SUBSCRIBE,),
                _ok("202", "The same answer whatever the address's state", "Accepted"),
                body="SubscriptionRequest",
                description="As the signup form: a confirmation mail (at most "
                "CONFIRM_MAILS_PER_DAY a day per address) and nothing else until the reader "
                "uses its link. The consent log records the token as the source, and the consent "
                "wording in the reader's language (`language`, else the site's).",
            )
        },
        "/api/v1/readers/lookup": {
            "post": _operation(
                "reader_lookup",
                "A reader's state, topics and frequency",
                (Scope.READ,),
                _ok("200", "The reader", "Reader"),
                body="Address",
                more={"404": "NotFound"},
                description="POST so that the address stays out of URLs and access logs.",
            )
        },
        "/api/v1/readers/export": {
            "post": _operation(
                "reader_export",
                "Everything held about an address (GDPR art. 15 and 20)",
                (Scope.READ,),
                _ok("200", "The data, consent history included", "Export"),
                body="Address",
            )
        },
        "/api/v1/readers/unsubscribe": {
            "post": _operation(
                "reader_unsubscribe",
                "Withdraw a reader's consent",
                (Scope.SEND,),
                _ok("202", "The same answer whatever the address's state", "Accepted"),
                body="Address",
                description="A token that may mail everyone reads nobody's data: the answer "
                "is the same for any address, a reader's or not, and in whatever state.",
            )
        },
        "/api/v1/articles": {
            "post": _operation(
                "articles_push",
                "Store articles, as a feed would",
                (Scope.SEND,),
                _ok("200", "Each article's id", "Pushed"),
                body="ArticlePush",
                description="All or nothing; an article already known by its guid (else its "
                "URL) is left as it is. Fields as in `newsletter articles import`.",
            )
        },
        "/api/v1/editions": {
            "get": _operation(
                "editions",
                "Editions and alerts, newest first",
                read_or_send,
                _ok("200", "A page of editions", "EditionPage"),
                parameters=[
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": pagination.MAX_LIMIT,
                            "default": pagination.DEFAULT_LIMIT,
                        },
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "next_cursor of the previous page",
                        "schema": {"type": "string", "maxLength": pagination.CURSOR_MAX},
                    },
                ],
            ),
            "post": _operation(
                "edition_send",
                "Send the next edition of a frequency",
                (Scope.SEND,),
                _ok("202", "Planned and queued, or resumed", "Started", LOCATION),
                body="SendRequest",
                more={"409": "NothingNew"},
                description="A repeat while the newest edition of that frequency is still "
                "being sent resumes that edition (`resumed: true`) and plans no other: rows of "
                "vanished workers are queued again, and no reader gets it twice. With "
                "SEND_IN_READER_TIME, an edition planned on an earlier day of the site (its "
                "TIMEZONE) does not count as unfinished: a call on a later day, while that "
                "edition still waits for some readers' hour, plans that day's edition (the "
                "articles since the earlier one), and the earlier edition goes on as its "
                "readers' hours come. Nothing unfinished and nothing new: 409 nothing-new.",
            ),
        },
        "/api/v1/editions/preview": {
            "get": _operation(
                "edition_preview",
                "The next edition, as a reader of these topics would get it now",
                read_or_send,
                _ok("200", "Subject, text and HTML", "Preview"),
                parameters=[
                    {
                        "name": "frequency",
                        "in": "query",
                        "schema": {"type": "string", "enum": FREQUENCIES, "default": "daily"},
                    },
                    {
                        "name": "topics",
                        "in": "query",
                        "style": "form",
                        "explode": True,
                        "description": "repeat it; none means every topic",
                        "schema": {"type": "array", "items": {"type": "string", "enum": slugs}},
                    },
                ],
                more={"409": "NothingNew"},
            )
        },
        "/api/v1/editions/{edition_id}": {
            "get": _operation(
                "edition_status",
                "An edition's counts by delivery state, bounces and complaints",
                read_or_send,
                _ok("200", "The edition", "EditionStatus"),
                parameters=[
                    {
                        "name": "edition_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 1, "maximum": ID_MAX},
                    }
                ],
                more={"404": "NotFound"},
            )
        },
        "/api/v1/alerts": {
            "post": _operation(
                "alert_send",
                "Send one article now to the readers of a topic",
                (Scope.SEND,),
                _ok("202", "Planned and queued", "Started", LOCATION),
                body="AlertRequest",
                more={"409": "AlreadySent"},
                description="Readers who turned alerts off are left out; an article goes to "
                "a topic once.",
            )
        },
    }


def document() -> Schema:
    """The whole OpenAPI document, for this app's settings."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{current_app.config['SITE_NAME']} newsletter API",
            "version": "1",
            "description": "Scopes: subscribe (POST /subscriptions); read (readers' lookup "
            "and export, editions); send (unsubscribe, articles, sending editions and alerts, "
            "editions). Errors are application/problem+json (RFC 9457).",
        },
        "servers": [{"url": current_app.config["BASE_URL"]}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "nl_<prefix>_<secret>",
                    "description": "newsletter api-tokens create --name NAME --scope SCOPE",
                }
            },
            "schemas": schemas(),
            "responses": {
                **RESPONSES,
                "NothingNew": NOTHING_NEW,
                "AlreadySent": problem("This article went to this topic already."),
            },
        },
    }


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    return jsonify(document())


@bp.get("/problems/<name>")
def problem_type(name: str) -> ResponseReturnValue:
    if name not in TYPES:
        raise Problem(404, "There is no such problem type.")
    status, title, description = TYPES[name]
    return jsonify(type=type_uri(name), title=title, status=status, description=description)
