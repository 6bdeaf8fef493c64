"""The bounce log as the console reads it: recent events with their classification."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from newsletter.db.models import BounceEvent, Delivery, Subscriber
from newsletter.extensions import db

PAGE = 50


@dataclass(frozen=True, slots=True)
class Entry:
    """One bounce or complaint report we received, and what it was about."""

    id: int
    received_at: datetime
    kind: str  # hard, soft, policy, complaint
    status: str | None  # the enhanced status code, X.Y.Z
    diagnostic: str  # the server's words, mailbox names redacted
    source: str
    edition_id: int | None
    reader_uid: str | None  # None once the reader was erased
    reader_email: str | None


def recent(
    before_id: int | None = None, limit: int = PAGE, subscriber_id: int | None = None
) -> list[Entry]:
    """The newest events first, ``limit`` at a time, older than ``before_id`` when given;
    only one reader's with ``subscriber_id``."""
    query = (
        select(
            BounceEvent.id,
            BounceEvent.received_at,
            BounceEvent.kind,
            BounceEvent.status,
            BounceEvent.diagnostic,
            BounceEvent.source,
            Delivery.edition_id,
            Subscriber.uid,
            Subscriber.email,
        )
        .outerjoin(Delivery, Delivery.id == BounceEvent.delivery_id)
        .outerjoin(Subscriber, Subscriber.id == BounceEvent.subscriber_id)
        .order_by(BounceEvent.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(BounceEvent.id < before_id)
    if subscriber_id is not None:
        query = query.where(BounceEvent.subscriber_id == subscriber_id)
    return [Entry(*row) for row in db.session.execute(query)]
