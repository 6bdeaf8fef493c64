"""What happens to a subscription: sign up, confirm, unsubscribe, change preferences."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from enum import StrEnum

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from newsletter import jobs
from newsletter.clock import utcnow
from newsletter.db.dialect import on_postgresql
from newsletter.db.models import Subscriber, Suppression, new_uid
from newsletter.extensions import db
from newsletter.readers import consent
from newsletter.readers.addresses import address_hash
from newsletter.readers.bulk import insert_topics
from newsletter.readers.consent import Origin
from newsletter.readers.notices import Notice

# The statements of the requests readers make most, built once: building and keying a
# statement costs SQLAlchemy more than running it over a pooled connection does. One INSERT
# per dialect, keyed by on_postgresql().
_SUBSCRIBER = Subscriber.__table__
_ADD_PENDING = {
    postgres: insert(_SUBSCRIBER)
    .on_conflict_do_nothing(index_elements=[_SUBSCRIBER.c.email])
    .returning(_SUBSCRIBER.c.id)
    for postgres, insert in ((True, postgresql.insert), (False, sqlite.insert))
}
# An unsubscribe reads three columns, locked, rather than the mapped reader and its topics.
_LOCK_BY_UID = (
    select(_SUBSCRIBER.c.id, _SUBSCRIBER.c.status, _SUBSCRIBER.c.confirm_nonce)
    .where(_SUBSCRIBER.c.uid == bindparam("uid"))
    .with_for_update()
)
_FORGET_NONCE = (
    update(_SUBSCRIBER)
    .where(_SUBSCRIBER.c.id == bindparam("subscriber_id"))
    .values(confirm_nonce=None)
)
_WITHDRAW = _FORGET_NONCE.values(status="unsubscribed", unsubscribed_at=bindparam("at"))
# The same in one round trip on PostgreSQL: lock the reader, withdraw (clearing any
# confirm link), log the withdrawal, and answer the status it had.
_PG_WITHDRAW = text(
    """
    WITH target AS (
        SELECT id, status FROM subscriber WHERE uid = :uid FOR UPDATE
    ), changed AS (
        UPDATE subscriber SET
            confirm_nonce = NULL,
            status = CASE WHEN target.status IN ('pending', 'active')
                THEN 'unsubscribed' ELSE subscriber.status END,
            unsubscribed_at = CASE WHEN target.status IN ('pending', 'active')
                THEN :at ELSE subscriber.unsubscribed_at END
        FROM target
        WHERE subscriber.id = target.id
            AND (target.status IN ('pending', 'active') OR subscriber.confirm_nonce IS NOT NULL)
        RETURNING subscriber.id, target.status AS previous
    ), logged AS (
        INSERT INTO consent_event
            (subscriber_id, action, occurred_at, ip, user_agent, source, detail)
        SELECT id, 'unsubscribe', :at, :ip, :user_agent, :source,
            json_build_object('previous_status', previous)
        FROM changed
        WHERE previous IN ('pending', 'active')
    )
    SELECT previous FROM changed
    """
)


def request_signup(
    email: str, name: str, topics: list[str], frequency: str, origin: Origin
) -> tuple[int, Notice]:
    """Record a signup request for a normalized address; nothing is activated yet.

    A request for an active reader changes nothing (anybody can type an address) and
    asks for a notice instead; any other state gets a confirmation link. The mail goes out
    when the caller commits.
    """
    subscriber_id = _add_pending(email, name, topics, frequency)
    if subscriber_id is not None:
        notice = Notice.CONFIRM
    else:
        subscriber_id, notice = _request_again(email, name, topics, frequency)
    consent.record(
        subscriber_id,
        "signup",
        origin,
        {"topics": topics, "frequency": frequency},
        with_wording=True,
    )
    jobs.enqueue(jobs.SIGNUP_MAIL, subscriber_id, str(notice))
    return subscriber_id, notice


def _add_pending(email: str, name: str, topics: list[str], frequency: str) -> int | None:
    """The id of a new pending reader with these choices, or None when the address is known.

    Most signups are for new addresses: one INSERT that skips a conflicting row serves them
    without a look-up first, and also settles a second request for the same new address
    (a double click) arriving at the same moment.
    """
    subscriber_id: int | None = db.session.execute(
        _ADD_PENDING[on_postgresql()],
        {
            "uid": new_uid(),
            "email": email,
            "name": name,
            "status": "pending",
            "frequency": frequency,
            "confirm_nonce": secrets.token_urlsafe(12),
            "created_at": utcnow(),
        },
    ).scalar()
    if subscriber_id is not None:
        insert_topics([(subscriber_id, slug) for slug in topics])
    return subscriber_id


def _request_again(email: str, name: str, topics: list[str], frequency: str) -> tuple[int, Notice]:
    """A request for an address already on the list."""
    subscriber = db.session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
    if subscriber.status == "active":
        return subscriber.id, Notice.ALREADY_SUBSCRIBED
    # Unconfirmed choices only; the reader's real state changes at confirmation.
    subscriber.name = name
    subscriber.topics = topics
    subscriber.frequency = frequency
    subscriber.confirm_nonce = subscriber.confirm_nonce or secrets.token_urlsafe(12)
    db.session.flush()
    return subscriber.id, Notice.CONFIRM


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
        subscriber.id,
        "confirm",
        origin,
        {"topics": subscriber.topics, "frequency": subscriber.frequency},
        with_wording=True,
    )
    return ConfirmOutcome.CONFIRMED


def unsubscribe(uid: str, origin: Origin) -> bool:
    """Withdraw consent; returns False when there was nothing left to withdraw."""
    # One statement where each costs a round trip; SQLite, in process, takes three.
    if on_postgresql():
        previous = db.session.execute(
            _PG_WITHDRAW,
            {
                "uid": uid,
                "at": utcnow(),
                "source": origin.source,
                "ip": origin.ip,
                "user_agent": origin.user_agent,
            },
        ).scalar()
        return previous in ("pending", "active")
    row = db.session.execute(_LOCK_BY_UID, {"uid": uid}).first()
    if row is None:
        return False
    subscriber_id, previous, nonce = row
    if previous in ("unsubscribed", "bounced", "complained"):
        if nonce is not None:
            # Any outstanding confirm link dies with the withdrawal.
            db.session.execute(_FORGET_NONCE, {"subscriber_id": subscriber_id})
        return False
    db.session.execute(_WITHDRAW, {"subscriber_id": subscriber_id, "at": utcnow()})
    consent.record(subscriber_id, "unsubscribe", origin, {"previous_status": previous})
    return True


def update_preferences(
    subscriber: Subscriber, topics: list[str], frequency: str, origin: Origin
) -> None:
    """Change what and how often a reader receives."""
    subscriber.topics = topics
    subscriber.frequency = frequency
    consent.record(subscriber.id, "preferences", origin, {"topics": topics, "frequency": frequency})


def by_uid(uid: str) -> Subscriber | None:
    return db.session.scalar(select(Subscriber).where(Subscriber.uid == uid))


def resend_confirmation(uid: str, nonce: object, may_mail: Callable[[str], bool]) -> None:
    """Send the confirmation link again to a still-pending reader whose link had ``nonce``.

    ``may_mail`` is asked last, with the address: the per-address daily limit counts only
    mails that would really go out.
    """
    subscriber = by_uid(uid)
    if (
        subscriber is not None
        and subscriber.status != "active"
        and subscriber.confirm_nonce == nonce
        and may_mail(subscriber.email)
    ):
        jobs.enqueue(jobs.SIGNUP_MAIL, subscriber.id, str(Notice.CONFIRM))
