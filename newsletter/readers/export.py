"""The reader list streamed out, as CSV or JSON, with bounded memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple, TextIO

from sqlalchemy import and_, exists, select

from newsletter.db.models import Subscriber, SubscriberTopic
from newsletter.extensions import db

EXPORT_FIELDS = (
    "email",
    "name",
    "status",
    "frequency",
    "topics",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
)


class ReaderRow(NamedTuple):
    """One reader as listed and exported."""

    email: str
    name: str
    status: str
    frequency: str
    topics: tuple[str, ...]
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None


def iter_readers(
    status: str | None = None, topic: str | None = None, chunk: int = 1000
) -> Iterator[ReaderRow]:
    """Stream readers in id order; memory holds one chunk of rows (and their topics) at a time."""
    query = select(
        Subscriber.id,
        Subscriber.email,
        Subscriber.name,
        Subscriber.status,
        Subscriber.frequency,
        Subscriber.created_at,
        Subscriber.confirmed_at,
        Subscriber.unsubscribed_at,
    ).order_by(Subscriber.id)
    if status is not None:
        query = query.where(Subscriber.status == status)
    if topic is not None:
        query = query.where(
            exists().where(
                and_(SubscriberTopic.subscriber_id == Subscriber.id, SubscriberTopic.topic == topic)
            )
        )
    # yield_per streams (a server-side cursor on PostgreSQL) instead of fetching every row.
    result = db.session.execute(query.execution_options(yield_per=chunk))
    for rows in result.partitions():
        ids = [row.id for row in rows]
        chosen: dict[int, list[str]] = {}
        for subscriber_id, slug in db.session.execute(
            select(SubscriberTopic.subscriber_id, SubscriberTopic.topic)
            .where(SubscriberTopic.subscriber_id.in_(ids))
            .order_by(SubscriberTopic.subscriber_id, SubscriberTopic.topic)
        ):
            chosen.setdefault(subscriber_id, []).append(slug)
        for row in rows:
            yield ReaderRow(
                row.email,
                row.name,
                row.status,
                row.frequency,
                tuple(chosen.get(row.id, ())),
                row.created_at,
                row.confirmed_at,
                row.unsubscribed_at,
            )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# A spreadsheet runs a cell starting with one of these as a formula (OWASP, CSV injection):
# such a cell is written with a leading apostrophe, which import takes off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    """A cell's text as no spreadsheet will run it."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def unescape_cell(value: str) -> str:
    """The text ``spreadsheet_safe`` was given (for import)."""
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def write_csv(rows: Iterable[ReaderRow], out: TextIO) -> int:
    """Write readers as CSV (topics joined with ";", which import reads back); returns the count.

    Names and addresses come from signup forms: a cell that a spreadsheet would take for a
    formula is escaped."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_FIELDS)
    count = 0
    for row in rows:
        writer.writerow(
            [
                spreadsheet_safe(row.email),
                spreadsheet_safe(row.name),
                row.status,
                row.frequency,
                ";".join(row.topics),
                _iso(row.created_at),
                _iso(row.confirmed_at) or "",
                _iso(row.unsubscribed_at) or "",
            ]
        )
        count += 1
    return count


def write_json(rows: Iterable[ReaderRow], out: TextIO) -> int:
    """Write readers as one JSON array, an element at a time; returns the count."""
    count = 0
    out.write("[")
    for row in rows:
        item: dict[str, Any] = dict(zip(EXPORT_FIELDS, row, strict=True))
        item.update(
            topics=list(row.topics),
            created_at=_iso(row.created_at),
            confirmed_at=_iso(row.confirmed_at),
            unsubscribed_at=_iso(row.unsubscribed_at),
        )
        out.write(("\n  " if count == 0 else ",\n  ") + json.dumps(item, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
