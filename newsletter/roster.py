"""The operators' view of the reader list: add one reader, list, export and count readers."""

from __future__ import annotations

import csv
import getpass
import json
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TextIO

from sqlalchemy import Table, and_, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from . import consent, topics
from .consent import Origin
from .errors import InvalidReaderField, ReaderRefused
from .extensions import db, on_postgresql
from .models import STATUSES, Subscriber, SubscriberTopic, Suppression, address_hash, utcnow

NAME_LENGTH = 100  # the column's size
# Readers in these states have withdrawn or lost consent: never (re)activated by an operator.
WITHDRAWN = ("unsubscribed", "bounced", "complained")
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


def dialect_insert(table: Table | type[Any]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with ON CONFLICT support on the session's database (PostgreSQL or SQLite)."""
    insert = postgresql.insert if on_postgresql() else sqlite.insert
    return insert(table)


def operator() -> str:
    """Who runs the command, for the consent log (the login name, when the system knows it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return "unknown"


def cli_origin(source: str = "cli") -> Origin:
    """The origin of a change made from the command line."""
    return Origin(source=source[:120])


def resolve_topics(value: str, available: Mapping[str, str] | None = None) -> list[str]:
    """Topic slugs from "a,b" or "a;b" (slugs or display names); empty means every topic.

    ``available`` saves recomputing the configured topics when called for many rows.
    """
    names = topics.available() if available is None else available
    chosen: set[str] = set()
    for part in re.split(r"[,;]", value):
        if not part.strip():
            continue
        slug = topics.slugify(part)
        if slug not in names:
            raise InvalidReaderField(
                "topics", f"unknown topic {part.strip()!r} (known: {', '.join(names)})"
            )
        chosen.add(slug)
    # In configured order, as the signup form stores them.
    return [slug for slug in names if slug in chosen] or list(names)


def resolve_frequency(value: str) -> str:
    """A frequency from any case; empty means weekly, the signup form's default."""
    frequency = value.strip().lower() or "weekly"
    if frequency not in topics.FREQUENCIES:
        raise InvalidReaderField(
            "frequency", f"unknown frequency {value.strip()!r} (use daily or weekly)"
        )
    return frequency


def clean_name(value: str) -> str:
    """A display name as stored; control characters would end up in mail headers and terminals."""
    name = value.strip()
    if any(not ch.isprintable() for ch in name):
        raise InvalidReaderField("name", "contains control characters (line breaks, tabs, ...)")
    if len(name) > NAME_LENGTH:
        raise InvalidReaderField("name", f"longer than {NAME_LENGTH} characters")
    return name


def suppression_reason(email: str) -> str | None:
    """Why a normalized address must not be mailed, or None."""
    return db.session.scalar(
        select(Suppression.reason).where(Suppression.address_hash == address_hash(email))
    )


def add_reader(
    email: str, name: str, chosen: list[str], frequency: str, *, confirmed: bool, origin: Origin
) -> Subscriber:
    """Add one new reader (pending with a confirm nonce, or active), in the caller's transaction."""
    reason = suppression_reason(email)
    if reason is not None:
        raise ReaderRefused(
            f"{email} is suppressed ({reason}); only the reader's own signup and confirmation "
            "through the form can bring it back"
        )
    existing = db.session.scalar(select(Subscriber.status).where(Subscriber.email == email))
    if existing is not None:
        raise ReaderRefused(f"{email} is already on the list ({existing}); nothing changed")
    now = utcnow()
    subscriber = Subscriber(
        email=email,
        name=name,
        frequency=frequency,
        status="active" if confirmed else "pending",
        confirmed_at=now if confirmed else None,
        confirm_nonce=None if confirmed else secrets.token_urlsafe(12),
        created_at=now,
    )
    subscriber.topics = chosen
    db.session.add(subscriber)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:  # added by a signup between the look-up and the insert
        raise ReaderRefused(f"{email} is already on the list; nothing changed") from exc
    consent.record(
        subscriber.id,
        "add",
        origin,
        {
            "status": subscriber.status,
            "topics": chosen,
            "frequency": frequency,
            "operator": operator(),
        },
    )
    return subscriber


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


def write_csv(rows: Iterable[ReaderRow], out: TextIO) -> int:
    """Write readers as CSV (topics joined with ";", which import reads back); returns the count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_FIELDS)
    count = 0
    for row in rows:
        writer.writerow(
            [
                row.email,
                row.name,
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


@dataclass
class Stats:
    """Counts of the reader list and its movement over a recent window."""

    by_status: dict[str, int]
    by_topic: dict[str, int]  # active readers per topic slug
    by_frequency: dict[str, int]  # active readers per frequency
    since: datetime
    confirmed: int  # growth: readers whose (latest) confirmation falls in the window
    unsubscribed: int  # churn: confirmed readers who unsubscribed in the window
    topic_names: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def net(self) -> int:
        return self.confirmed - self.unsubscribed

    @property
    def active_at_start(self) -> int:
        """Active readers when the window opened: today's, less its gains, plus its losses."""
        return self.by_status["active"] - self.confirmed + self.unsubscribed

    @property
    def churn_rate(self) -> float | None:
        start = self.active_at_start
        return self.unsubscribed / start if start > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_status": self.by_status,
            "active_by_topic": self.by_topic,
            "active_by_frequency": self.by_frequency,
            "window": {
                "since": self.since.isoformat(),
                "days": WINDOW_DAYS,
                "confirmed": self.confirmed,
                "unsubscribed": self.unsubscribed,
                "net": self.net,
                "active_at_start": self.active_at_start,
                "churn_rate": self.churn_rate,
            },
        }


WINDOW_DAYS = 30


def stats(now: datetime | None = None) -> Stats:
    """Count readers by status, topic and frequency, and the last 30 days' growth and churn.

    Growth and churn come from each reader's latest confirmed_at and unsubscribed_at, so a
    reader who left and came back within the window counts once as growth.
    """
    since = (now or utcnow()) - timedelta(days=WINDOW_DAYS)
    by_status = dict.fromkeys(STATUSES, 0)
    by_status.update(
        db.session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        ).all()
    )
    active = Subscriber.status == "active"
    names = topics.available()
    by_topic = dict.fromkeys(names, 0)
    by_topic.update(
        db.session.execute(
            select(SubscriberTopic.topic, func.count())
            .join(Subscriber, Subscriber.id == SubscriberTopic.subscriber_id)
            .where(active)
            .group_by(SubscriberTopic.topic)
        ).all()
    )
    by_frequency = dict.fromkeys(topics.FREQUENCIES, 0)
    by_frequency.update(
        db.session.execute(
            select(Subscriber.frequency, func.count()).where(active).group_by(Subscriber.frequency)
        ).all()
    )
    confirmed = db.session.scalar(select(func.count()).where(Subscriber.confirmed_at >= since)) or 0
    # An unsubscribe from a never-confirmed (pending) reader is not the loss of a reader.
    unsubscribed = (
        db.session.scalar(
            select(func.count()).where(
                Subscriber.unsubscribed_at >= since, Subscriber.confirmed_at.is_not(None)
            )
        )
        or 0
    )
    return Stats(by_status, by_topic, by_frequency, since, confirmed, unsubscribed, names)
