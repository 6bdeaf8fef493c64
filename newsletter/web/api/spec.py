"""The API's OpenAPI 3.1 document (``GET /api/v1/openapi.json``) and its problem types.

Written here as data, beside the views it describes; tests/web/test_api_openapi.py keeps
the two in step (every route and method, and each operation's scopes). The site's topics
and public address are filled in from the settings.

Schemas promise no more than the views enforce: a request the document calls invalid is
refused. Some valid-looking values are refused too (an address email-validator rejects, a
title of spaces), with a 422 naming the field.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue

from newsletter.articles import cleaning
from newsletter.db.models import (
    BounceKind,
    DeliveryState,
    EditionKind,
    EditionState,
    Frequency,
    Scope,
    Status,
)
from newsletter.readers import roster, topics
from newsletter.web.api import articles, bp, pagination
from newsletter.web.api.editions import ID_MAX
from newsletter.web.api.problems import MEDIA_TYPE, TYPES, Problem, type_uri
from newsletter.web.api.readers import ADDRESS_MAX

Schema = dict[str, Any]

FREQUENCIES = [f.value for f in Frequency]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **more: Any) -> Schema:
    return {"type": [kind, "null"], **more}


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _object(properties: Schema, required: tuple[str, ...] = (), *, closed: bool = True) -> Schema:
    found: Schema = {"type": "object", "properties": properties}
    if required:
        found["required"] = list(required)
    if closed:
        found["additionalProperties"] = False
    return found


DATE_TIME = {"type": "string", "format": "date-time"}
MAYBE_DATE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _schemas() -> dict[str, Schema]:
    slugs = list(topics.available())
    topic = {"type": "string", "enum": slugs}
    return {
        "Problem": _object(
            {
                "type": {"type": "string", "description": "about:blank, or one of the API's types"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "errors": {"type": "array", "items": _ref("FieldError")},
                "edition_id": {"type": "integer", "description": "already-sent: the alert"},
            },
            ("type", "title", "status", "detail"),
            closed=False,  # RFC 9457 extension members
        ),
        "FieldError": _object(
            {
                "pointer": {"type": "string", "description": "JSON Pointer into the body"},
                "parameter": {"type": "string", "description": "a query parameter's name"},
                "detail": {"type": "string"},
            },
            ("detail",),
        ),
        "ProblemType": _object(
            {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "description": {"type": "string"},
            },
            ("type", "title", "status", "description"),
        ),
        "SubscriptionRequest": _object(
            {
                "email": {"type": "string", "maxLength": ADDRESS_MAX},
                "name": {"type": "string", "maxLength": roster.NAME_LENGTH},
                "topics": {
                    "type": "array",
                    "items": topic,
                    "maxItems": len(slugs),
                    "description": "none (or empty) means every topic",
                },
                "frequency": {"type": "string", "enum": FREQUENCIES, "default": "weekly"},
                "consent": {
                    "type": "boolean",
                    "enum": [True],
                    "description": "the reader agreed to the consent wording (CONSENT_TEXT)",
                },
            },
            ("email", "consent"),
        ),
        "Accepted": _object(
            {"status": {"type": "string", "enum": ["accepted"]}, "detail": {"type": "string"}},
            ("status", "detail"),
        ),
        "Address": _object({"email": {"type": "string", "maxLength": ADDRESS_MAX}}, ("email",)),
        "Reader": _object(
            {
                "email": {"type": "string"},
                "name": {"type": "string"},
                "status": {"type": "string", "enum": [s.value for s in Status]},
                "frequency": {"type": "string", "enum": FREQUENCIES},
                "topics": {"type": "array", "items": {"type": "string"}},
                "alerts": {"type": "boolean"},
                "created_at": DATE_TIME,
                "confirmed_at": MAYBE_DATE_TIME,
                "unsubscribed_at": MAYBE_DATE_TIME,
            },
            (
                "email",
                "name",
                "status",
                "frequency",
                "topics",
                "alerts",
                "created_at",
                "confirmed_at",
                "unsubscribed_at",
            ),
        ),
        "Export": _object(
            {
                "address": {"type": "string"},
                "exported_at": DATE_TIME,
                "subscriber": _nullable("object"),
                "topics": {"type": "array"},
                "consent_history": {"type": "array"},
                "deliveries": {"type": "array"},
                "suppression": {"type": "object"},
            },
            (
                "address",
                "exported_at",
                "subscriber",
                "topics",
                "consent_history",
                "deliveries",
                "suppression",
            ),
            closed=False,
        ),
        "Unsubscribed": _object(
            {
                "email": {"type": "string"},
                "status": {"type": "string", "enum": [s.value for s in Status]},
                "withdrawn": {
                    "type": "boolean",
                    "description": "whether this call withdrew consent (false: already gone)",
                },
            },
            ("email", "status", "withdrawn"),
        ),
        "ArticleIn": _object(
            {
                "url": {"type": "string", "minLength": 1, "description": "absolute http(s)"},
                "title": {"type": "string", "minLength": 1},
                "category": {"type": "string", "minLength": 1, "description": "its section"},
                "guid": _nullable("string", description="a stable id; default: the URL"),
                "summary": _nullable("string", description="HTML, sanitized as a feed's"),
                "source": _nullable("string"),
                "published": _nullable("string", description="ISO 8601; default: now"),
                "author": _nullable("string"),
                "image_url": _nullable("string", description="absolute https"),
                "image_alt": _nullable("string", description="needs image_url"),
                "image_width": _nullable(
                    "integer",
                    minimum=1,
                    maximum=cleaning.IMAGE_SIDE_MAX,
                    description="pixels; needs image_url",
                ),
                "image_height": _nullable(
                    "integer",
                    minimum=1,
                    maximum=cleaning.IMAGE_SIDE_MAX,
                    description="pixels; needs image_url",
                ),
            },
            ("url", "title", "category"),
        ),
        "ArticlePush": _object(
            {
                "articles": {
                    "type": "array",
                    "items": _ref("ArticleIn"),
                    "minItems": 1,
                    "maxItems": articles.MAX_ARTICLES,
                }
            },
            ("articles",),
        ),
        "Pushed": _object(
            {
                "added": {"type": "integer", "minimum": 0},
                "known": {"type": "integer", "minimum": 0},
                "articles": {
                    "type": "array",
                    "items": _object(
                        {
                            "id": {"type": "integer"},
                            "guid": {"type": "string"},
                            "added": {"type": "boolean"},
                            "topic": {"type": "string"},
                            "topic_configured": {
                                "type": "boolean",
                                "description": "false: no reader can choose this section yet",
                            },
                        },
                        ("id", "guid", "added", "topic", "topic_configured"),
                    ),
                },
            },
            ("added", "known", "articles"),
        ),
        "Edition": _object(_edition_properties(), tuple(_edition_properties())),
        "EditionStatus": _object(
            {
                **_edition_properties(),
                "articles": {"type": "integer", "minimum": 0},
                "readers": {"type": "integer", "minimum": 0},
                "remaining": {"type": "integer", "minimum": 0},
                "deliveries": _counts([s.value for s in DeliveryState]),
                "bounces": _counts([k.value for k in BounceKind]),
            },
            (*_edition_properties(), "articles", "readers", "remaining", "deliveries", "bounces"),
        ),
        "EditionPage": _object(
            {
                "items": {"type": "array", "items": _ref("Edition")},
                "next_cursor": _nullable("string", description="give it as ?cursor="),
                "next": _nullable("string", description="the next page's URL"),
            },
            ("items", "next_cursor", "next"),
        ),
        "Preview": _object(
            {
                "frequency": {"type": "string", "enum": FREQUENCIES},
                "topics": {"type": "array", "items": {"type": "string"}},
                "articles": {"type": "integer", "minimum": 1},
                "readers": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "readers the edition would go to now, of any topic",
                },
                "subject": {"type": "string"},
                "text": {"type": "string"},
                "html": {"type": "string"},
            },
            ("frequency", "topics", "articles", "readers", "subject", "text", "html"),
        ),
        "SendRequest": _object(
            {"frequency": {"type": "string", "enum": FREQUENCIES}}, ("frequency",)
        ),
        "AlertRequest": _object(
            {
                "article_id": {"type": "integer", "minimum": 1, "maximum": ID_MAX},
                "topic": {
                    "type": ["string", "null"],
                    "enum": [*slugs, None],
                    "description": "default: the article's own topic",
                },
            },
            ("article_id",),
        ),
        "Started": _object(
            {
                "edition_id": {"type": "integer"},
                "kind": {"type": "string", "enum": [k.value for k in EditionKind]},
                "readers": {"type": "integer", "minimum": 0},
                "resumed": {
                    "type": "boolean",
                    "description": "an unfinished edition taken up again, not a new one",
                },
                "url": {"type": "string", "description": "its status"},
            },
            ("edition_id", "kind", "readers", "resumed", "url"),
        ),
    }


def _edition_properties() -> Schema:
    return {
        "id": {"type": "integer"},
        "kind": {"type": "string", "enum": [k.value for k in EditionKind]},
        "frequency": {"type": ["string", "null"], "enum": [*FREQUENCIES, None]},
        "topic": _nullable("string", description="an alert's topic"),
        "state": {"type": "string", "enum": [s.value for s in EditionState]},
        "subject": {"type": "string"},
        "created_at": DATE_TIME,
        "finished_at": MAYBE_DATE_TIME,
        "url": {"type": "string"},
    }


def _counts(keys: list[str]) -> Schema:
    return _object({key: {"type": "integer", "minimum": 0} for key in keys}, tuple(keys))


def _problem(description: str, headers: Schema | None = None) -> Schema:
    found: Schema = {
        "description": description,
        "content": {MEDIA_TYPE: {"schema": _ref("Problem")}},
    }
    if headers:
        found["headers"] = headers
    return found


RESPONSES: dict[str, Schema] = {
    "Malformed": _problem("The body is not JSON (type malformed-body)."),
    "Unauthorized": _problem(
        "No token, or one that is unknown or revoked.",
        {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    ),
    "Forbidden": _problem(
        "The token's scope does not reach this operation.",
        {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    ),
    "NotFound": _problem("No such resource."),
    "TooLarge": _problem("The body is larger than API_MAX_BYTES."),
    "Unsupported": _problem("The body is not application/json."),
    "Invalid": _problem("Fields are missing or wrong; `errors` names each (type validation)."),
    "TooMany": _problem(
        "The token's rate limit (API_RATE_LIMIT) is spent.",
        {"Retry-After": {"required": True, "schema": {"type": "string"}}},
    ),
}


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
        found["requestBody"] = {"required": True, "content": _json(_ref(body))}
    queried = any(parameter["in"] == "query" for parameter in parameters or [])
    found["responses"] = _responses(
        ok, body=body is not None, query=queried, auth=bool(scopes), more=more
    )
    return found


def _ok(status: str, description: str, schema: str, headers: Schema | None = None) -> Schema:
    found: Schema = {"description": description, "content": _json(_ref(schema))}
    if headers:
        found["headers"] = headers
    return {status: found}


LOCATION = {"Location": {"required": True, "schema": {"type": "string"}}}
NOTHING_NEW = _problem("Nothing new to send or preview (type nothing-new).")


def _paths() -> dict[str, Schema]:
    slugs = list(topics.available())
    read_or_send = (Scope.READ, Scope.SEND)
    return {
        "/api/v1/openapi.json": {
            "get": _operation(
                "openapi",
                "This document",
                (),
                {"200": {"description": "OpenAPI 3.1", "content": _json({"type": "object"})}},
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
                "uses its link. The consent log records the token as the source.",
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
                _ok("200", "Unsubscribed (or already gone)", "Unsubscribed"),
                body="Address",
                more={"404": "NotFound"},
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
                description="A second call while the edition is unfinished resumes it; no "
                "reader gets it twice.",
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
            "schemas": _schemas(),
            "responses": {
                **RESPONSES,
                "NothingNew": NOTHING_NEW,
                "AlreadySent": _problem("This article went to this topic already."),
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
