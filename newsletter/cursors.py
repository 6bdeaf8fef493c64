"""Cursors of keyset pagination: where a listing's next page starts, as an opaque string.

A cursor holds the sort key of the last row shown; the next page is the rows after it,
found through an index however deep the page, where OFFSET would read and skip every row
before it. Cursors are not secret (they hold what the page showed) and not signed: a
tampered one only starts a listing elsewhere, and a malformed one is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from newsletter.errors import InvalidCursor

MAX_LENGTH = 2000


def encode(key: list[Any]) -> str:
    """The cursor for a row's sort key (a list of JSON values)."""
    data = json.dumps(key, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def decode(cursor: str) -> list[Any]:
    """The sort key in ``cursor``; the caller matches it against the shape it issues."""
    if len(cursor) > MAX_LENGTH:
        raise InvalidCursor("this page link is too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("this page link is not valid") from None
    # What a database can hold: no lone surrogates (not UTF-8), no NUL (PostgreSQL).
    if not isinstance(key, list) or not all(_storable(item) for item in key):
        raise InvalidCursor("this page link is not valid")
    return key


def _storable(item: Any) -> bool:
    if isinstance(item, str):
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return item.isprintable()
    if isinstance(item, int) and not isinstance(item, bool):
        return abs(item) < 2**63
    return item is None
