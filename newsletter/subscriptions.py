"""What happens to a subscription: sign up, confirm, unsubscribe, change preferences."""

from __future__ import annotations

import secrets
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from . import consent
from .consent import Origin
from .extensions import db
from .models import Subscriber, Suppression, address_hash, utcnow


class Notice(StrEnum):
    """Which mail, if any, a signup request calls for."""

    CONFIRM = "confirm"
    ALREADY_SUBSCRIBED = "already-subscribed"


def request_signup(
    email: str, name: str, topics: list[str], frequency: str, origin: Origin
) -> tuple[int, Notice]:
    """Record a signup request for a normalized address; nothing is activated yet.

    A request for an active reader changes nothing (anybody can type an address) and
    asks for a notice instead; any other state gets a confirmation link.
    """
    subscriber = _find_or_add(email)
    if subscriber.status == "active":
        notice = Notice.ALREADY_SUBSCRIBED
    else:
        notice = Notice.CONFIRM
        # Unconfirmed choices only; the reader's real state changes at confirmation.
        subscriber.name = name
        subscriber.topics = topics
        subscriber.frequency = frequency
        subscriber.confirm_nonce = subscriber.confirm_nonce or secrets.token_urlsafe(12)
    db.session.flush()
    consent.record(
        subscriber,
        "signup",
        origin,
        {"topics": topics, "frequency": frequency},
        with_wording=True,
    )
    return subscriber.id, notice


def _find_or_add(email: str) -> Subscriber:
    """The row for ``email``, added as pending when the address is new.

    The insert skips a conflicting row rather than failing on the unique address: a second
    request for the same new address (a double click) may add it between look-up and insert.
    """
    query = select(Subscriber).where(Subscriber.email == email)
    subscriber = db.session.scalar(query)
    if subscriber is None:
        on_postgresql = db.session.get_bind().dialect.name == "postgresql"
        insert = postgresql.insert if on_postgresql else sqlite.insert
        db.session.execute(
            insert(Subscriber)
            .values(email=email, status="pending")
            .on_conflict_do_nothing(index_elements=[Subscriber.email])
        )
        subscriber = db.session.scalars(query).one()
    return subscriber


class ConfirmOutcome(StrEnum):
    CONFIRMED = "confirmed"
    ALREADY = "already"
    STALE = "stale"


def confirm(uid: str, nonce: str, origin: Origin) -> ConfirmOutcome:
    """Activate the subscription a confirm link was issued for, if that link is still current."""
    subscriber = db.session.scalar(
        select(Subscriber).where(Subscriber.uid == uid).with_for_update()
    )
    if subscriber is None:
        return ConfirmOutcome.STALE
    if subscriber.confirm_nonce is None or not secrets.compare_digest(
        subscriber.confirm_nonce, nonce
    ):
        if subscriber.status == "active":
            return ConfirmOutcome.ALREADY
        return ConfirmOutcome.STALE
    subscriber.status = "active"
    subscriber.confirm_nonce = None
    subscriber.confirmed_at = utcnow()
    subscriber.unsubscribed_at = None
    # A confirmed, fresh opt-in is the one path that lifts an earlier suppression.
    db.session.execute(
        delete(Suppression).where(Suppression.address_hash == address_hash(subscriber.email))
    )
    consent.record(
        subscriber,
        "confirm",
        origin,
        {"topics": subscriber.topics, "frequency": subscriber.frequency},
        with_wording=True,
    )
    return ConfirmOutcome.CONFIRMED


def unsubscribe(uid: str, origin: Origin) -> bool:
    """Withdraw consent; returns False when there was nothing left to withdraw."""
    subscriber = db.session.scalar(
        select(Subscriber).where(Subscriber.uid == uid).with_for_update()
    )
    if subscriber is None:
        return False
    # Any outstanding confirm link dies with the withdrawal.
    subscriber.confirm_nonce = None
    if subscriber.status in ("unsubscribed", "bounced", "complained"):
        return False
    previous = subscriber.status
    subscriber.status = "unsubscribed"
    subscriber.unsubscribed_at = utcnow()
    consent.record(subscriber, "unsubscribe", origin, {"previous_status": previous})
    return True


def update_preferences(
    subscriber: Subscriber, topics: list[str], frequency: str, origin: Origin
) -> None:
    """Change what and how often a reader receives."""
    subscriber.topics = topics
    subscriber.frequency = frequency
    consent.record(subscriber, "preferences", origin, {"topics": topics, "frequency": frequency})


def by_uid(uid: str) -> Subscriber | None:
    return db.session.scalar(select(Subscriber).where(Subscriber.uid == uid))
