"""The one place that asks which database is in use, and the SQL that differs between them.

PostgreSQL runs in production and SQLite is the embedded default; every statement that
must be spelled differently for one of them is chosen here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, any_, bindparam, event
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
