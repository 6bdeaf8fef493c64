"""Finding readers for the console: by the beginning of an address or a name, a page at a time.

Fast at a million readers: each part is a range scan of an index kept in byte order
(migration 0009), read in that order, and a page continues from a cursor (keyset), never
from an OFFSET. A term matches addresses first, in address order, then names, in name
order; a reader whose address matched is not listed again for their name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, func, literal, not_, select, tuple_

from newsletter import cursors
from newsletter.db.dialect import byte_order, starting_with
from newsletter.db.models import Subscriber
from newsletter.errors import InvalidCursor
from newsletter.extensions import db

PAGE = 50
MAX_TERM = 320


@dataclass(frozen=True, slots=True)
class Found:
    """One reader in a list of results."""

    uid: str
    email: str
    name: str
    status: str
    frequency: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Page:
    """A page of results, and the cursor of the next one (None on the last page)."""

    readers: list[Found]
    after: str | None


_COLUMNS = (
    Subscriber.uid,
    Subscriber.email,
    Subscriber.name,
    Subscriber.status,
    Subscriber.frequency,
    Subscriber.created_at,
)


def _found(row: Any) -> Found:
    return Found(row.uid, row.email, row.name, row.status, row.frequency, row.created_at)


def search(term: str, after: str | None = None, limit: int = PAGE) -> Page:
    """Readers whose address or name begins with ``term`` (any case); every reader, newest
    first, for an empty term. ``after`` is the cursor a previous page returned."""
    term = term.strip()[:MAX_TERM]
    if not term:
        return _newest(after, limit)
    key = cursors.decode(after) if after else ["a", None]
    if not key or not isinstance(key[0], str):
        raise InvalidCursor("this page link is not valid")
    found: list[Found] = []
    address = term.lower()  # addresses are stored lowercased
    if key[0] == "a":
        if len(key) != 2 or not isinstance(key[1], str | None):
            raise InvalidCursor("this page link is not valid")
        query = select(*_COLUMNS).where(starting_with(Subscriber.email, address))
        if key[1] is not None:
            query = query.where(byte_order(Subscriber.email) > key[1])
        rows = _rows(query.order_by(byte_order(Subscriber.email)), limit)
        found = [_found(row) for row in rows[:limit]]
        if len(rows) > limit:
            return Page(found, cursors.encode(["a", found[-1].email]))
        key = ["n", None, None]
    if key[0] != "n" or len(key) != 3:
        raise InvalidCursor("this page link is not valid")
    if "@" in term:  # an address: no name has one
        return Page(found, None)
    room = limit - len(found)
    name = func.lower(Subscriber.name)
    ordered = byte_order(name)
    # The term lowered by the database, as the names in its index are (SQLite folds only
    # ASCII letters, PostgreSQL by its own locale).
    query = select(*_COLUMNS, name.label("lowered")).where(
        starting_with(name, func.lower(literal(term, String))),
        not_(starting_with(Subscriber.email, address)),
    )
    if key[1] is not None:
        if not isinstance(key[1], str) or not isinstance(key[2], int):
            raise InvalidCursor("this page link is not valid")
        query = query.where(tuple_(ordered, Subscriber.id) > tuple_(key[1], key[2]))
    query = query.add_columns(Subscriber.id).order_by(ordered, Subscriber.id)
    rows = _rows(query, room)
    found += [_found(row) for row in rows[:room]]
    if len(rows) <= room:
        return Page(found, None)
    if room == 0:  # the addresses filled this page exactly; names follow on the next
        return Page(found, cursors.encode(["n", None, None]))
    last = rows[room - 1]
    return Page(found, cursors.encode(["n", last.lowered, last.id]))


def _newest(after: str | None, limit: int) -> Page:
    query = select(*_COLUMNS, Subscriber.id).order_by(Subscriber.id.desc())
    if after:
        key = cursors.decode(after)
        if len(key) != 2 or key[0] != "i" or not isinstance(key[1], int):
            raise InvalidCursor("this page link is not valid")
        query = query.where(Subscriber.id < key[1])
    rows = _rows(query, limit)
    found = [_found(row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(found, cursors.encode(["i", rows[limit - 1].id]) if more else None)


def _rows(query: Select[*tuple[Any, ...]], limit: int) -> list[Any]:
    """Up to ``limit`` rows and one more, which tells whether a next page exists."""
    return list(db.session.execute(query.limit(limit + 1)).all())
