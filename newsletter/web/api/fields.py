"""Reading what a caller sends: one JSON object, each field checked and every bad one named.

Everything here comes from outside: a body that is not JSON is a 400, a body of another
type a 415, one over API_MAX_BYTES a 413, and fields of the wrong type, unknown fields or
values out of range a 422 listing each of them. Nothing is written before all of it passed.
"""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request

from newsletter.web.api.problems import FieldError, Invalid, Problem


def _no_constants(value: str) -> Any:
    raise ValueError(f"{value} is not a JSON number")


def json_body() -> dict[str, Any]:
    """The request's body as a JSON object."""
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise Problem(
            415,
            "Send the body as JSON, with Content-Type: application/json.",
            headers={"Accept-Post": "application/json"},
        )
    request.max_content_length = int(current_app.config["API_MAX_BYTES"])
    raw = request.get_data(cache=False)  # over the limit: a 413
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise Problem(400, "The body is not UTF-8 text.", name="malformed-body") from None
    except json.JSONDecodeError as exc:
        raise Problem(
            400,
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
            name="malformed-body",
        ) from None
    except (ValueError, RecursionError) as exc:  # NaN, a number of 5,000 digits, deep nesting
        detail = str(exc) if isinstance(exc, ValueError) else "it is nested too deeply"
        raise Problem(
            400, f"The body is not valid JSON: {detail}.", name="malformed-body"
        ) from None
    try:
        # JSON can escape a lone surrogate (\ud800), which is no character: no database
        # would store it, no mail could carry it.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(
            400, "The body is not valid JSON: it holds a lone surrogate.", name="malformed-body"
        ) from None
    if not isinstance(data, dict):
        raise Invalid([FieldError("#", "must be a JSON object")])
    return data


def _kind(value: Any) -> str:
    """A JSON value's type as JSON names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def pointer(*parts: str | int) -> str:
    """A JSON Pointer, as a URI fragment (RFC 6901 section 6), to a place in the body."""
    escaped = (str(part).replace("~", "~0").replace("/", "~1") for part in parts)
    return "#/" + "/".join(escaped)


class Fields:
    """The fields of one JSON object, read one by one; each problem is kept, not raised."""

    def __init__(
        self,
        data: dict[str, Any],
        allowed: tuple[str, ...],
        errors: list[FieldError] | None = None,
        at: tuple[str | int, ...] = (),
    ) -> None:
        self.data = data
        self.at = at
        self.errors: list[FieldError] = [] if errors is None else errors
        for name in sorted(set(data) - set(allowed)):
            self.fail(name, f"unknown field (the fields are {', '.join(allowed)})")

    def where(self, name: str | int) -> str:
        return pointer(*self.at, name)

    def fail(self, name: str | int, detail: str) -> None:
        self.errors.append(FieldError(self.where(name), detail))

    def fail_item(self, name: str, index: int, detail: str) -> None:
        """An item of an array field is bad."""
        self.errors.append(FieldError(pointer(*self.at, name, index), detail))

    def _get(self, name: str, wanted: str, required: bool, nullable: bool) -> Any:
        """The field's value, or None when it is absent (or null, where null is allowed)."""
        if name not in self.data:
            if required:
                self.fail(name, "missing")
            return None
        value = self.data[name]
        if value is None and (required or not nullable):
            self.fail(name, f"must be {wanted}, not null")
        return value

    def text(
        self, name: str, *, required: bool = False, nullable: bool = False, max_length: int
    ) -> str | None:
        value = self._get(name, "a string", required, nullable)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(name, f"must be a string, not {_kind(value)}")
            return None
        if len(value) > max_length:
            self.fail(name, f"must be at most {max_length} characters")
            return None
        return value

    def boolean(self, name: str, *, required: bool = False) -> bool | None:
        value = self._get(name, "true or false", required, False)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.fail(name, f"must be true or false, not {_kind(value)}")
            return None
        return value

    def integer(self, name: str, *, required: bool = False, low: int, high: int) -> int | None:
        value = self._get(name, "a whole number", required, False)
        if value is None:
            return None
        # bool is an int to Python, never a number to a caller.
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(name, f"must be a whole number, not {_kind(value)}")
            return None
        if not low <= value <= high:
            self.fail(name, f"must be a whole number from {low} to {high}")
            return None
        return value

    def choices(self, name: str, allowed: list[str]) -> list[str] | None:
        """An array of some of ``allowed`` (each at most once); every bad item is named."""
        value = self._get(name, "an array of strings", False, False)
        if value is None:
            return None
        if not isinstance(value, list):
            self.fail(name, f"must be an array of strings, not {_kind(value)}")
            return None
        if len(value) > len(allowed):
            self.fail(name, f"must hold at most {len(allowed)} items")
            return None
        good = True
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.fail_item(name, index, f"must be a string, not {_kind(item)}")
                good = False
            elif item not in allowed:
                self.fail_item(name, index, f"unknown (known: {', '.join(allowed)})")
                good = False
        return list(value) if good else None

    def done(self) -> None:
        """Answer 422 naming every problem found, if there was any."""
        if self.errors:
            raise Invalid(self.errors)


def query_int(name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within [low, high]."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10 and low <= int(raw) <= high):
        raise Invalid([FieldError(name, f"must be a whole number from {low} to {high}", True)])
    return int(raw)
