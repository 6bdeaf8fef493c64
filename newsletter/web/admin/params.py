"""Query parameters of the console's pages, checked: a bad one is a 400 naming it."""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import BadRequest

# Ids are 64-bit in the ledger; anything longer is no id of ours (and no database's integer).
_LONGEST = 18


def position(name: str, what: str) -> int | None:
    """The optional whole number ``name`` (where a page of a listing starts), or None."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > _LONGEST:
        raise BadRequest(f"{name}: must be {what}")
    return int(raw)


def text(name: str, longest: int) -> str:
    """The optional text ``name``, printable and at most ``longest`` characters."""
    raw = request.args.get(name, "")
    if len(raw) > longest:
        raise BadRequest(f"{name}: must be at most {longest} characters")
    if not raw.isprintable():
        raise BadRequest(f"{name}: must be text without control characters")
    return raw
