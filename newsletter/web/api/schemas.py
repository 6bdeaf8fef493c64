"""The OpenAPI document's components: the schemas of bodies and answers, and the
problem responses every operation shares.

Schemas promise no more than the views enforce: a request they call invalid is refused.
Some valid-looking values are refused too (an address email-validator rejects, a title of
spaces), with a 422 naming the field.
"""

from __future__ import annotations

from typing import Any

from newsletter import i18n
from newsletter.articles import cleaning
from newsletter.db.models import (
    BounceKind,
    DeliveryState,
    EditionKind,
    EditionState,
    Status,
)
from newsletter.readers import roster, topics
from newsletter.web.api import articles
from newsletter.web.api.editions import FREQUENCIES, ID_MAX
from newsletter.web.api.problems import MEDIA_TYPE
from newsletter.web.api.readers import ADDRESS_MAX

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **more: Any) -> Schema:
    return {"type": [kind, "null"], **more}


def json_content(schema: Schema) -> Schema:
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


def schemas() -> dict[str, Schema]:
    slugs = list(topics.available())
    topic = {"type": "string", "enum": slugs}
    return {
        "Problem": _object(
            {
                "type": {"type": "string", "description": "about:blank, or one of the API's types"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "errors": {"type": "array", "items": ref("FieldError")},
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
                "language": {
                    "type": "string",
                    "enum": i18n.offered(),
                    "description": "the language of the reader's mails and pages, one of "
                    "LANGUAGES (default: the site's, the first)",
                },
                "consent": {
                    "type": "boolean",
                    "enum": [True],
                    "description": "the reader agreed to the consent wording (CONSENT_TEXT, in "
                    "their language)",
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
                    "items": ref("ArticleIn"),
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
                "items": {"type": "array", "items": ref("Edition")},
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


def problem(description: str, headers: Schema | None = None) -> Schema:
    found: Schema = {
        "description": description,
        "content": {MEDIA_TYPE: {"schema": ref("Problem")}},
    }
    if headers:
        found["headers"] = headers
    return found


RESPONSES: dict[str, Schema] = {
    "Malformed": problem("The body is not JSON (type malformed-body)."),
    "Unauthorized": problem(
        "No token, or one that is unknown or revoked.",
        {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    ),
    "Forbidden": problem(
        "The token's scope does not reach this operation.",
        {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    ),
    "NotFound": problem("No such resource."),
    "TooLarge": problem("The body is larger than API_MAX_BYTES."),
    "Unsupported": problem("The body is not application/json."),
    "Invalid": problem("Fields are missing or wrong; `errors` names each (type validation)."),
    "TooMany": problem(
        "The token's rate limit (API_RATE_LIMIT) is spent.",
        {"Retry-After": {"required": True, "schema": {"type": "string"}}},
    ),
}
