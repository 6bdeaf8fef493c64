"""Cursor pagination: ``limit`` items at a time, and an opaque cursor to the next page.

A cursor names the last item a page showed, so a page is stable while new items arrive in
front of it (offsets would shift, repeating or skipping items). Callers must treat it as
opaque: its form may change.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flask import request, url_for

from newsletter.web.api.fields import query_int
from newsletter.web.api.problems import FieldError, Invalid

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
CURSOR_MAX = 64
_FORM = re.compile(r"next:([1-9][0-9]{0,17})")


def limit() -> int:
    return query_int("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)


def encode(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"next:{last_id}".encode()).decode().rstrip("=")


def decode() -> int | None:
    """The id of the last item of the previous page, from the ``cursor`` parameter."""
    cursor = request.args.get("cursor")
    if cursor is None:
        return None
    try:
        if len(cursor) > CURSOR_MAX:
            raise ValueError
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        found = _FORM.fullmatch(text)
        if found is None:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid(
            [FieldError("cursor", "is not a cursor this API gave out", in_query=True)]
        ) from None
    return int(found.group(1))


def page(
    endpoint: str, rows: Sequence[T], size: int, key: Callable[[T], int], view: Callable[[T], Any]
) -> dict[str, Any]:
    """A page's envelope: at most ``size`` items (the caller fetched one row more, to know
    whether another page follows), and the cursor and link to the next page, or None."""
    shown = rows[:size]
    cursor = encode(key(shown[-1])) if len(rows) > size else None
    link = url_for(endpoint, limit=size, cursor=cursor) if cursor else None
    return {"items": [view(row) for row in shown], "next_cursor": cursor, "next": link}
