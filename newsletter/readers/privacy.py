"""A person's rights over their data: a copy of everything held (export) and erasure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Table, delete, select

from newsletter.clock import utcnow
from newsletter.db.models import (
    Delivery,
    Edition,
    Subscriber,
    Suppression,
)
from newsletter.extensions import db
from newsletter.readers import consent, suppression, topics
from newsletter.readers.addresses import address_hash
from newsletter.readers.consent import Origin
from newsletter.readers.roster import operator


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def export_data(email: str) -> dict[str, Any]:
    """Everything held about a normalized address, as JSON-ready data (GDPR art. 15 and 20)."""
    suppression = db.session.scalar(
        select(Suppression).where(Suppression.address_hash == address_hash(email))
    )
    held: dict[str, Any] = {
        "address": email,
        "exported_at": _iso(utcnow()),
        "subscriber": None,
        "topics": [],
        "consent_history": [],
        "deliveries": [],
        "suppression": {
            "suppressed": suppression is not None,
            "reason": suppression.reason if suppression else None,
            "since": _iso(suppression.created_at) if suppression else None,
        },
    }
    subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
    if subscriber is None:
        return held
    held["subscriber"] = {
        "email": subscriber.email,
        "name": subscriber.name,
        "status": subscriber.status,
        "frequency": subscriber.frequency,
        "language": subscriber.language,  # None: the site's
        "timezone": subscriber.timezone,
        "created_at": _iso(subscriber.created_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        # The nonce itself is a credential (it is what a confirm link proves), not their data.
        "confirmation_outstanding": subscriber.confirm_nonce is not None,
    }
    names = topics.available()
    held["topics"] = [{"slug": slug, "name": names.get(slug, slug)} for slug in subscriber.topics]
    events = consent.history(subscriber.id)
    held["consent_history"] = [
        {
            "action": event.action,
            "occurred_at": _iso(event.occurred_at),
            "source": event.source,
            "ip": event.ip,
            "user_agent": event.user_agent,
            "consent_version": event.consent_version,
            "consent_wording": wording,
            "detail": event.detail,
        }
        for event, wording in events
    ]
    deliveries = db.session.execute(
        select(Delivery, Edition.subject, Edition.frequency)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.edition_id)
    )
    held["deliveries"] = [
        {
            "edition": delivery.edition_id,
            "subject": subject,
            "frequency": frequency,
            "state": delivery.state,
            "attempts": delivery.attempts,
            "sent_at": _iso(delivery.sent_at),
            "last_error": delivery.last_error,
            "message_id": delivery.message_id,
        }
        for delivery, subject, frequency in deliveries
    ]
    # Tables added later that point at readers (bounce reports, ...) are held data too.
    shown = {"subscriber_topic", "consent_event", "delivery"}
    for table, column in linked_tables():
        if table.name not in shown:
            held.setdefault("other_records", {})[table.name] = [
                {key: _plain(value) for key, value in row.items()}
                for row in db.session.execute(select(table).where(column == subscriber.id))
                .mappings()
                .all()
            ]
    return held


def _plain(value: Any) -> Any:
    """A value as JSON can hold it."""
    return _iso(value) if isinstance(value, datetime) else value


def linked_tables() -> list[tuple[Table, Column[Any]]]:
    """Every table with a column pointing at a subscriber, those depending on others first."""
    target = Subscriber.__table__.c.id
    return [
        (table, column)
        for table in reversed(db.metadata.sorted_tables)
        for column in table.c
        if any(key.column is target for key in column.foreign_keys)
    ]


@dataclass(frozen=True)
class Erasure:
    """What an erasure removed: whether there was a subscriber, and rows per linked table."""

    subscriber: bool
    removed: dict[str, int]


def erase(email: str, origin: Origin, by: str | None = None) -> Erasure:
    """Delete a normalized address's personal data and suppress its hash (GDPR art. 17).

    Runs in the caller's transaction. Whether or not the address was on the list, its hash
    is suppressed with reason "erased", so no import or operator can mail it again; the
    reader's own double opt-in through the signup form is the one way back. ``by`` names
    who asked (a console operator); by default the login running the command.
    """
    subscriber_id = db.session.scalar(select(Subscriber.id).where(Subscriber.email == email))
    removed: dict[str, int] = {}
    if subscriber_id is not None:
        # Bulk DELETE statements, not session.delete(): the consent log's append-only guard is
        # a before_flush hook on ORM changes, and erasure is the one case the law puts above
        # the log (the reader's IP, user agent and choices are personal data). Every linked
        # table is emptied of the reader's rows, not left to ON DELETE SET NULL: a consent
        # line or a bounce report with the link cut is still about this person.
        for table, column in linked_tables():
            result = db.session.execute(
                delete(table).where(column == subscriber_id),
                execution_options={"synchronize_session": False},
            )
            removed[table.name] = int(result.rowcount or 0)  # type: ignore[attr-defined]
        db.session.execute(
            delete(Subscriber).where(Subscriber.id == subscriber_id),
            execution_options={"synchronize_session": False},
        )
        db.session.expire_all()
    suppression.erased(email)
    erasure = Erasure(subscriber_id is not None, removed)
    # The log keeps that an erasure happened, by whom, and how much went; nothing that
    # points back to the person.
    consent.record(
        None,
        consent.Action.ERASE,
        Origin(source=origin.source),
        {"operator": by or operator(), "subscriber": erasure.subscriber, **removed},
    )
    return erasure
