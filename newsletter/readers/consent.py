"""The consent log: what a reader agreed to or withdrew, when, from where and how.

This module is the only writer of the log, and the withdrawal of consent (an unsubscribe)
is written here too, since the reader's status and the log line must change together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

from flask import current_app, has_request_context, request
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from newsletter import config, i18n
from newsletter.clock import utcnow
from newsletter.db.dialect import on_postgresql
from newsletter.db.models import CONSENTING, ConsentEvent, ConsentWording, Status, Subscriber
from newsletter.extensions import client_ip, db


class Action(StrEnum):
    """What a line of the log records."""

    SIGNUP = "signup"  # asked for the newsletter (not yet confirmed)
    CONFIRM = "confirm"  # confirmed from the mail: consent given
    ADD = "add"  # added by an operator
    IMPORT = "import"  # imported by an operator
    PREFERENCES = "preferences"  # changed topics or frequency
    UNSUBSCRIBE = "unsubscribe"  # withdrew consent
    COMPLAINT = "complaint"  # marked a mail as spam: consent withdrawn
    ERASE = "erase"  # a person's data erased (the line names nobody)


class NewEvent(NamedTuple):
    subscriber_id: int
    detail: dict[str, Any]


# A plain INSERT, built once and sent at once: an event is never read back or changed (the
# log is append-only), so it needs none of the ORM's unit-of-work bookkeeping.
_APPEND = insert(ConsentEvent.__table__)


@dataclass(frozen=True, slots=True)
class Origin:
    """How a change reached us: the form or path, and the caller's IP and user agent."""

    source: str
    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def from_request(cls, source: str) -> Origin:
        if not has_request_context():
            return cls(source=source)
        agent = _printable(request.headers.get("User-Agent", ""))[:300] or None
        # Cut to the columns' sizes: behind a proxy the IP is read from X-Forwarded-For,
        # which a client can fill with anything when the hop count is set too high.
        ip = _printable(client_ip())[:45]
        return cls(source=_printable(source)[:120], ip=ip, user_agent=agent)


def _printable(value: str) -> str:
    """Header text as it is stored: control characters dropped (PostgreSQL refuses NUL)."""
    return "".join(ch for ch in value if ch.isprintable())


def wording(language: str | None = None) -> tuple[str, str]:
    """The consent text in a language (the current page's by default) and its version (a
    digest of the text itself, so each language's text is a version of its own)."""
    text = _text_in(i18n.reader_language(language) if language else i18n.current())
    return _version(text), text


@lru_cache(maxsize=64)
def _version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _text_in(language: str) -> str:
    configured = current_app.config["CONSENT_TEXT"]
    if isinstance(configured, Mapping):
        return str(configured.get(language) or configured[i18n.default()])
    if configured == config.DEFAULTS["CONSENT_TEXT"]:
        # The shipped wording: the catalogs say it in every language they have.
        return str(i18n.catalog(language).ugettext(configured))
    return str(configured)


def record(
    subscriber_id: int | None,
    action: Action,
    origin: Origin,
    detail: dict[str, Any] | None = None,
    *,
    with_wording: bool = False,
    language: str | None = None,
) -> None:
    """Append one event to the log (in the caller's transaction); None names nobody.

    ``with_wording``: the consent text agreed to is recorded, in ``language`` (by default
    the language of the page being answered, which showed it).
    """
    version = _stored_wording(language) if with_wording else None
    db.session.execute(
        _APPEND,
        {
            "subscriber_id": subscriber_id,
            "action": action,
            "occurred_at": utcnow(),
            "source": origin.source,
            "ip": origin.ip,
            "user_agent": origin.user_agent,
            "consent_version": version,
            "detail": detail or {},
        },
    )


def history(subscriber_id: int) -> list[tuple[ConsentEvent, str | None]]:
    """A reader's consent log, oldest first, each line with the wording it agreed to."""
    rows = db.session.execute(
        select(ConsentEvent, ConsentWording.text)
        .outerjoin(ConsentWording, ConsentWording.version == ConsentEvent.consent_version)
        .where(ConsentEvent.subscriber_id == subscriber_id)
        .order_by(ConsentEvent.occurred_at, ConsentEvent.id)
    )
    return [(event, wording) for event, wording in rows]


def _stored_wording(language: str | None) -> str:
    """The current wording's version, its text stored on first use."""
    version, text = wording(language)
    # Wordings are never deleted, so a version once seen committed is not looked up again
    # by this app: one SELECT per wording and process rather than one per signup.
    committed: set[str] = current_app.extensions.setdefault("newsletter.wordings", set())
    if version in committed:
        return version
    # Versions this session inserted itself may yet be rolled back: never cached from here.
    added: set[str] = db.session.info.setdefault("newsletter.wordings_added", set())
    if db.session.get(ConsentWording, version) is None:
        try:
            with db.session.begin_nested():
                db.session.add(ConsentWording(version=version, text=text))
            added.add(version)
        except IntegrityError:
            pass  # stored at the same moment by another request's first use of it
    elif version not in added:
        committed.add(version)
    return version


# Each chunk of an import travels as one JSON array unpacked by the server (see roster).
_PG_EVENTS = text(
    """INSERT INTO consent_event (subscriber_id, action, occurred_at, source, detail)
    SELECT CAST(r->>0 AS integer), :action, :now, :source, r->1
    FROM json_array_elements(CAST(:rows AS json)) AS r
    """
)


def record_many(events: Sequence[NewEvent], action: Action, source: str, now: datetime) -> None:
    """Append one event per reader of a bulk change (an import), in the caller's transaction."""
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
        _APPEND,
        [
            {
                "subscriber_id": event.subscriber_id,
                "action": action,
                "occurred_at": now,
                "source": source,
                "ip": None,
                "user_agent": None,
                "consent_version": None,
                "detail": event.detail,
            }
            for event in events
        ],
    )


# Withdrawal, the rule: a pending or active reader becomes unsubscribed and the log says so
# with the status they had; any outstanding confirm link dies with it, whatever the status;
# a reader who had already withdrawn or lost consent changes no further and logs nothing.
# One-click unsubscribes are the most frequent write a reader makes, so the rule is written
# twice below, once per database, and tested as one.
_SUBSCRIBER = Subscriber.__table__
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
_WITHDRAW = _FORGET_NONCE.values(status=Status.UNSUBSCRIBED, unsubscribed_at=bindparam("at"))
# On PostgreSQL in one round trip: lock the reader, withdraw, log, answer the old status.
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


def withdraw(uid: str, origin: Origin) -> bool:
    """Unsubscribe the reader ``uid``; False when there was nothing left to withdraw."""
    now = utcnow()
    if on_postgresql():
        previous = db.session.execute(
            _PG_WITHDRAW,
            {
                "uid": uid,
                "at": now,
                "source": origin.source,
                "ip": origin.ip,
                "user_agent": origin.user_agent,
            },
        ).scalar()
        return previous in CONSENTING
    row = db.session.execute(_LOCK_BY_UID, {"uid": uid}).first()
    if row is None:
        return False
    subscriber_id, previous, nonce = row
    if previous not in CONSENTING:
        if nonce is not None:
            db.session.execute(_FORGET_NONCE, {"subscriber_id": subscriber_id})
        return False
    db.session.execute(_WITHDRAW, {"subscriber_id": subscriber_id, "at": now})
    record(subscriber_id, Action.UNSUBSCRIBE, origin, {"previous_status": previous})
    return True
