"""Errors of the API as ``application/problem+json`` (RFC 9457), for every 4xx and 5xx.

An HTTP error with nothing more to say has the type ``about:blank`` and its status's name as
its title. The API's own kinds of problem have a type URI of their own, which answers with
a description (``GET /api/v1/problems/<name>``). A validation problem lists each bad field:
``pointer`` (a JSON Pointer into the body) or ``parameter`` (a query parameter), with its
``detail``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app
from werkzeug.exceptions import HTTPException

MEDIA_TYPE = "application/problem+json"

# The API's own problem types: name -> (status, title, what it means).
TYPES: dict[str, tuple[int, str, str]] = {
    "validation": (
        422,
        "The request's fields are not valid",
        "One or more fields of the body or the query are missing, of the wrong type or out of "
        "range. `errors` lists each one, by `pointer` into the body or by query `parameter`, "
        "with its `detail`. Nothing was written.",
    ),
    "malformed-body": (
        400,
        "The body is not JSON",
        "The body could not be read as one JSON value in UTF-8 (RFC 8259). Nothing was written.",
    ),
    "nothing-new": (
        409,
        "Nothing new to send",
        "No article was published since the previous edition of this frequency (or none in the "
        "topics asked for), so there is no edition to preview or send.",
    ),
    "already-sent": (
        409,
        "This alert was sent already",
        "An article is alerted to a topic once. `edition_id` names the alert that sent it.",
    ),
}


def type_uri(name: str) -> str:
    """The absolute URI of one of the API's problem types (it answers with its description)."""
    return f"{current_app.config['BASE_URL']}/api/v1/problems/{name}"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One bad field: where it is (a JSON Pointer into the body, or a query parameter)."""

    where: str
    detail: str
    in_query: bool = False

    def as_dict(self) -> dict[str, str]:
        key = "parameter" if self.in_query else "pointer"
        return {key: self.where, "detail": self.detail}


class Problem(HTTPException):
    """An error answered as problem+json; ``name`` picks one of TYPES (None: about:blank)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        name: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **members: Any,
    ) -> None:
        super().__init__(description=detail)
        self.code = status
        self.problem_name = name
        self.title = title or (TYPES[name][1] if name else None)
        self.extra_headers = headers or {}
        self.members = members

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [("Content-Type", MEDIA_TYPE), *self.extra_headers.items()]


class Invalid(Problem):
    """A validation problem naming every bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(
            422,
            "; ".join(f"{error.where or 'the body'}: {error.detail}" for error in errors[:5]),
            name="validation",
            errors=[error.as_dict() for error in errors],
        )


def response(exc: HTTPException) -> Response:
    """The problem+json answer for any HTTP error raised under the API's prefix."""
    status = exc.code or 500
    if isinstance(exc, Problem):
        type_ = type_uri(exc.problem_name) if exc.problem_name else "about:blank"
        title = exc.title or exc.name
        members = exc.members
    else:
        type_, title, members = "about:blank", exc.name, {}
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "status": status,
        "detail": _detail(exc, status),
        **members,
    }
    # Keep what the error's own headers say (Allow on a 405, WWW-Authenticate on a 401).
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    answer = Response(json.dumps(body, ensure_ascii=False), status, headers, mimetype=MEDIA_TYPE)
    answer.headers["Cache-Control"] = "no-store"
    if status == 429:
        # Flask-Limiter adds it only with RATELIMIT_HEADERS_ENABLED; a client needs it always.
        answer.headers["Retry-After"] = str(_retry_after())
    return answer


def _retry_after() -> int:
    """Seconds until the breached limit's window resets (at least one)."""
    from newsletter.extensions import limiter

    breached = limiter.current_limit
    reset_at = breached.reset_at if breached is not None else time.time() + 60
    return max(1, math.ceil(reset_at - time.time()))


# Werkzeug's wording is written for a person at a browser; these say what an API client needs.
DETAILS = {
    404: "There is no API resource at this address; GET /api/v1/openapi.json lists them.",
    405: "This resource does not take that method; the Allow header lists the ones it takes.",
    413: "The body is larger than this API accepts (NEWSLETTER_API_MAX_BYTES).",
    429: "Too many calls with this token; wait for the time Retry-After gives.",
    500: "Something went wrong on our side; nothing you sent caused it. Try again later.",
}


def _detail(exc: HTTPException, status: int) -> str:
    if isinstance(exc, Problem):
        return str(exc.description)
    return DETAILS.get(status) or str(exc.description or exc.name)
