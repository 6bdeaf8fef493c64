"""The one place that asks which database is in use, and the SQL that differs between them.

PostgreSQL runs in production and SQLite is the embedded default; every statement that
must be spelled differently for one of them is chosen here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Table, and_, any_, bindparam, event, func, literal, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.types import String

from newsletter.extensions import db


@event.listens_for(Engine, "connect")
def _sqlite_settings(dbapi_connection: Any, connection_record: Any) -> None:
    """SQLite leaves foreign keys (and so ON DELETE cascades) off unless asked per connection."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # Readers (the web) and the writer (a CLI send) no longer block each other.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


def on_postgresql() -> bool:
    """Whether the session's database is PostgreSQL (else SQLite)."""
    return bool(db.session.get_bind().dialect.name == "postgresql")


def sqlite_write_lock(table: str) -> None:
    """On SQLite, take the database's one write lock now rather than at the transaction's
    first write: nothing it reads next can change under it before it ends. (SQLite has no
    row locks; on PostgreSQL, lock the rows read instead, with SELECT ... FOR UPDATE.)"""
    if not on_postgresql():
        db.session.execute(text(f"UPDATE {table} SET id = id WHERE 0 = 1"))


def upsert(table: Table | type[Any]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with ON CONFLICT support on the session's database."""
    insert = postgresql.insert if on_postgresql() else sqlite.insert
    return insert(table)


def among(
    column: ColumnElement[str] | InstrumentedAttribute[str], values: Sequence[str]
) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``= ANY(array)``, one parameter however many values."""
    if on_postgresql():
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))
    return column.in_(values)


def in_param(column: ColumnElement[Any], name: str, postgresql: bool) -> ColumnElement[bool]:
    """``column IN :name`` for a list parameter; on PostgreSQL ``column = ANY(:name)``.

    For statements built once and run many times: an IN list is a new statement text for
    every length, which the driver parses and the server plans anew; the array form is one
    text whatever the count, prepared once. (``among`` binds its values into a statement
    built per call.)
    """
    if postgresql:
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


# The largest code point: every text starting with a prefix sorts below prefix + this.
_LAST = "\U0010ffff"


def byte_order(expr: ColumnElement[str] | InstrumentedAttribute[str]) -> ColumnElement[str]:
    """``expr`` compared and sorted by its UTF-8 bytes, the order the search indexes keep
    (migration 0009): SQLite's default, PostgreSQL's "C" collation."""
    if on_postgresql():
        return expr.collate("C")
    return cast(ColumnElement[str], expr)


def starting_with(
    expr: ColumnElement[str] | InstrumentedAttribute[str], prefix: str | ColumnElement[str]
) -> ColumnElement[bool]:
    """``expr`` begins with ``prefix``, as a range an index on ``byte_order(expr)`` serves
    (LIKE would be case-insensitive on SQLite, and unindexed on PostgreSQL outside "C")."""
    ordered = byte_order(expr)
    start = prefix if isinstance(prefix, ColumnElement) else literal(prefix, String)
    return and_(ordered >= start, ordered < start.concat(_LAST))


def local_day(
    column: ColumnElement[Any] | InstrumentedAttribute[Any], zone: ZoneInfo, now: datetime
) -> ColumnElement[Any]:
    """The calendar day of a stored moment in the time zone ``zone``.

    PostgreSQL converts each moment by the zone's rules; SQLite shifts by the zone's offset
    at ``now``, so on the days around a change of the clocks a moment within an hour of
    midnight may fall on the neighbouring day.
    """
    if on_postgresql():
        return func.date(func.timezone(zone.key, column))
    offset = now.astimezone(zone).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    return func.date(column, f"{minutes:+d} minutes")
