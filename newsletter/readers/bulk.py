"""Many readers at once: INSERTs of whole chunks, in the shape each database takes fastest.

PostgreSQL gets one statement per chunk and table, its rows passed as one JSON array that
the server unpacks: a handful of parameters however many rows, so neither SQLAlchemy nor
psycopg renders or parses thousands of placeholders. SQLite gets executemany, which sqlite3 runs
natively. Either way the subscriber ids come back through RETURNING.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, any_, bindparam, insert, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.types import String

from newsletter.db.dialect import on_postgresql, upsert
from newsletter.db.models import ConsentEvent, Subscriber, SubscriberTopic
from newsletter.extensions import db


class NewReader(NamedTuple):
    uid: str
    email: str
    name: str
    frequency: str
    confirm_nonce: str | None


class NewEvent(NamedTuple):
    subscriber_id: int
    detail: dict[str, Any]


def among(
    column: ColumnElement[str] | InstrumentedAttribute[str], values: Sequence[str]
) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``= ANY(array)``, one parameter however many values."""
    if on_postgresql():
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))
    return column.in_(values)


# Each chunk travels as one JSON array of rows, unpacked by the server: json.dumps is fast C
# code, whereas arrays of strings are escaped value by value in Python by psycopg.
_PG_READERS = text(
    """
    INSERT INTO subscriber
        (uid, email, name, status, frequency, confirm_nonce, created_at, confirmed_at)
    SELECT r->>0, r->>1, r->>2, :status, r->>3, r->>4, :now, CAST(:confirmed_at AS timestamptz)
    FROM json_array_elements(CAST(:rows AS json)) AS r
    ON CONFLICT (email) DO NOTHING
    RETURNING id, email
    """
)
_PG_TOPICS = text(
    """
    INSERT INTO subscriber_topic (subscriber_id, topic)
    SELECT CAST(r->>0 AS integer), r->>1 FROM json_array_elements(CAST(:rows AS json)) AS r
    """
)
_PG_EVENTS = text(
    """
    INSERT INTO consent_event (subscriber_id, action, occurred_at, source, detail)
    SELECT CAST(r->>0 AS integer), :action, :now, :source, r->1
    FROM json_array_elements(CAST(:rows AS json)) AS r
    """
)


def insert_readers(
    readers: Sequence[NewReader], status: str, now: datetime, confirmed_at: datetime | None
) -> dict[str, int]:
    """Insert readers whose address is still free; returns their ids by address.

    ON CONFLICT: an address added by a signup since it was checked is left out, not an error.
    """
    if on_postgresql():
        rows = db.session.execute(
            _PG_READERS,
            {
                "status": status,
                "now": now,
                "confirmed_at": confirmed_at,
                "rows": json.dumps(readers, ensure_ascii=False),
            },
        )
        return {email: id_ for id_, email in rows}
    table = Subscriber.__table__
    statement = (
        upsert(table)
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(table.c.id, table.c.email)
    )
    params = [
        {
            **reader._asdict(),
            "status": status,
            "created_at": now,
            "confirmed_at": confirmed_at,
            "unsubscribed_at": None,
        }
        for reader in readers
    ]
    return {email: id_ for id_, email in db.session.execute(statement, params)}


def insert_topics(pairs: Sequence[tuple[int, str]]) -> None:
    """Add (subscriber id, topic slug) rows."""
    if not pairs:
        return
    if on_postgresql():
        db.session.execute(_PG_TOPICS, {"rows": json.dumps(pairs, ensure_ascii=False)})
        return
    db.session.execute(
        insert(SubscriberTopic.__table__),
        [{"subscriber_id": id_, "topic": topic} for id_, topic in pairs],
    )


def insert_events(events: Sequence[NewEvent], action: str, source: str, now: datetime) -> None:
    """Append one consent event per reader (inserts only: the log stays append-only)."""
    if not events:
        return
    if on_postgresql():
        db.session.execute(
            _PG_EVENTS,
            {
                "action": action,
                "now": now,
                "source": source,
                "rows": json.dumps(events, ensure_ascii=False),
            },
        )
        return
    db.session.execute(
        insert(ConsentEvent.__table__),
        [
            {
                "subscriber_id": e.subscriber_id,
                "action": action,
                "occurred_at": now,
                "source": source,
                "detail": e.detail,
            }
            for e in events
        ],
    )
