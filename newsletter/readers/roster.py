"""The operators' hand on the list: add one reader, and the checks of what they type."""

from __future__ import annotations

import getpass
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from newsletter.clock import utcnow
from newsletter.db.models import Subscriber, Suppression
from newsletter.errors import InvalidReaderField, ReaderRefused
from newsletter.extensions import db
from newsletter.readers import consent
from newsletter.readers.addresses import address_hash
from newsletter.readers.consent import Origin

NAME_LENGTH = 100  # the column's size


# Readers in these states have withdrawn or lost consent: never (re)activated by an operator.
WITHDRAWN = ("unsubscribed", "bounced", "complained")


def operator() -> str:
    """Who runs the command, for the consent log (the login name, when the system knows it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return "unknown"


def cli_origin(source: str = "cli") -> Origin:
    """The origin of a change made from the command line."""
    return Origin(source=source[:120])


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
