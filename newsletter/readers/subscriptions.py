"""What happens to a subscription: sign up, confirm, unsubscribe, change preferences."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from flask import current_app
from sqlalchemy import select

from newsletter import i18n
from newsletter.clock import utcnow
from newsletter.db.models import CONSENTING, ConsentEvent, Frequency, Status, Subscriber
from newsletter.errors import InvalidReaderField
from newsletter.extensions import db
from newsletter.readers import consent, notices, roster, suppression, zones
from newsletter.readers.consent import Origin
from newsletter.readers.notices import Notice
from newsletter.readers.topics import clean as clean_topics


def request_signup(
    email: str,
    name: str,
    topics: list[str],
    frequency: str,
    origin: Origin,
    language: str | None = None,
    timezone: str | None = None,
) -> tuple[int, Notice]:
    """Record a signup request for a normalized address; nothing is activated yet.

    A request for an active reader changes nothing (anybody can type an address) and
    asks for a notice instead; any other state gets a confirmation link, in the request's
    ``language`` (one of LANGUAGES; None: the site's). The mail goes out when the caller
    commits. The consent wording recorded is the one of the page answering the request.
    ``timezone``: the reader's IANA zone, when the form knew it.
    """
    # Most signups are for new addresses: creating the reader first, skipping an address
    # already on the list, needs no look-up and also settles a double click.
    new = roster.NewReader(email, name, topics, frequency, language)
    subscriber_id = roster.create([new], Status.PENDING, utcnow()).get(email)
    if subscriber_id is not None:
        notice = Notice.CONFIRM
    else:
        subscriber_id, notice = _request_again(email)
    # The request's choices live in its log line, and its confirmation link names that line
    # by a random key: only the person who can open that mail can make them the reader's.
    request_key = secrets.token_urlsafe(9)
    detail: dict[str, object] = {
        "topics": topics,
        "frequency": frequency,
        "name": name,
        "request": request_key,
    }
    if language is not None:
        detail["language"] = language
    if timezone is not None:
        detail["timezone"] = timezone
    consent.record(subscriber_id, consent.Action.SIGNUP, origin, detail, with_wording=True)
    if notice is Notice.CONFIRM:
        notices.enqueue(subscriber_id, notice, request_key, language)
    else:
        notices.enqueue(subscriber_id, notice)  # to the reader, in the language they chose
    return subscriber_id, notice


def _request_again(email: str) -> tuple[int, Notice]:
    """A request for an address already on the list changes nothing of the reader.

    Anybody can type a pending reader's address: the name (which appears in every digest's
    greeting and To), topics and frequency change only when a confirmation link is used.
    """
    subscriber = db.session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
    if subscriber.status == Status.ACTIVE:
        return subscriber.id, Notice.ALREADY_SUBSCRIBED
    subscriber.confirm_nonce = subscriber.confirm_nonce or secrets.token_urlsafe(12)
    db.session.flush()
    return subscriber.id, Notice.CONFIRM


class ConfirmOutcome(StrEnum):
    CONFIRMED = "confirmed"
    ALREADY = "already"
    STALE = "stale"


class ConfirmLink(StrEnum):
    """What pressing a confirmation link's button would do."""

    CURRENT = "current"  # confirm the reader
    ALREADY = "already"  # nothing: the reader is subscribed (the link was used or replaced)
    STALE = "stale"  # nothing: the link was replaced or withdrawn, or the reader is gone


def confirm_link(uid: str, nonce: str) -> ConfirmLink:
    """Where a confirmation link stands, changing nothing (the confirm page's GET)."""
    return _link_state(by_uid(uid), nonce)


def _link_state(subscriber: Subscriber | None, nonce: str) -> ConfirmLink:
    if subscriber is None:
        return ConfirmLink.STALE
    if subscriber.confirm_nonce is not None and secrets.compare_digest(
        subscriber.confirm_nonce, nonce
    ):
        return ConfirmLink.CURRENT
    return ConfirmLink.ALREADY if subscriber.status == Status.ACTIVE else ConfirmLink.STALE


def confirm(
    uid: str,
    nonce: str,
    origin: Origin,
    request: str | None = None,
    chosen: Choices | None = None,
) -> ConfirmOutcome:
    """Activate the subscription a confirm link was issued for, if that link is still current.

    ``chosen``: what the reader left in the confirm page's fields (shown filled in with
    their request's choices), which become theirs. Without it, ``request`` is the key of the
    signup request the link answers (in its consent log line), whose name, topics and
    frequency are taken instead.
    """
    subscriber = db.session.scalar(
        select(Subscriber).where(Subscriber.uid == uid).with_for_update()
    )
    state = _link_state(subscriber, nonce)
    if state is ConfirmLink.ALREADY:
        return ConfirmOutcome.ALREADY
    if subscriber is None or state is ConfirmLink.STALE:
        return ConfirmOutcome.STALE
    asked = _request_choices(subscriber, request) if request is not None else None
    if chosen is None:
        chosen = asked
    if chosen is not None:
        subscriber.name = chosen.name
        subscriber.topics = chosen.topics
        subscriber.frequency = chosen.frequency
        if chosen.language is not None:
            subscriber.language = chosen.language
    if asked is not None and asked.timezone is not None:
        # The confirm page does not ask for it: the browser that signed up told it.
        subscriber.timezone = asked.timezone
    subscriber.status = Status.ACTIVE
    subscriber.confirm_nonce = None
    subscriber.confirmed_at = utcnow()
    subscriber.unsubscribed_at = None
    # A confirmed, fresh opt-in is the one path that lifts an earlier suppression.
    suppression.lift(subscriber.email)
    detail: dict[str, object] = {"topics": subscriber.topics, "frequency": subscriber.frequency}
    if subscriber.language is not None:
        detail["language"] = subscriber.language
    if subscriber.timezone is not None:
        detail["timezone"] = subscriber.timezone
    consent.record(
        subscriber.id,
        consent.Action.CONFIRM,
        origin,
        detail,
        with_wording=True,
        language=subscriber.language,
    )
    if current_app.config["WELCOME_MAIL"]:
        # Goes when the caller commits: a confirmation rolled back welcomes nobody.
        notices.enqueue(subscriber.id, Notice.WELCOME)
    return ConfirmOutcome.CONFIRMED


@dataclass(frozen=True)
class Choices:
    """What a reader receives: the name in the greeting, topics, frequency and language
    (None: as it is), and the time zone a signup request brought, if any."""

    name: str
    topics: list[str]
    frequency: str
    language: str | None = None
    timezone: str | None = None


def requested(uid: str, request: str | None) -> Choices | None:
    """The choices a pending reader's confirmation link would confirm (the confirm page's).

    Those of the signup request the link answers, else the reader's as stored.
    """
    subscriber = by_uid(uid)
    if subscriber is None:
        return None
    return (request and _request_choices(subscriber, request)) or Choices(
        subscriber.name, list(subscriber.topics), subscriber.frequency, subscriber.language
    )


def _request_choices(subscriber: Subscriber, request: str) -> Choices | None:
    """The choices of this reader's own signup request, checked again against today's settings."""
    events = db.session.scalars(
        select(ConsentEvent).where(
            ConsentEvent.subscriber_id == subscriber.id,
            ConsentEvent.action == consent.Action.SIGNUP,
        )
    )
    event = next(
        (e for e in events if isinstance(e.detail, dict) and e.detail.get("request") == request),
        None,
    )
    if event is None:
        return None
    detail = event.detail
    chosen = detail.get("topics")
    topics = clean_topics([str(slug) for slug in chosen]) if isinstance(chosen, list) else None
    frequency = detail.get("frequency")
    name = detail.get("name")
    language = i18n.supported(detail.get("language"))
    try:
        cleaned = roster.clean_name(name) if isinstance(name, str) else subscriber.name
    except InvalidReaderField:  # the form let it through then
        cleaned = subscriber.name
    return Choices(
        cleaned,
        topics if topics is not None else list(subscriber.topics),
        str(frequency) if frequency in {f.value for f in Frequency} else subscriber.frequency,
        language or subscriber.language,
        zones.clean(detail.get("timezone")),
    )


def unsubscribe(uid: str, origin: Origin) -> bool:
    """Withdraw consent; returns False when there was nothing left to withdraw."""
    return consent.withdraw(uid, origin)


def update_preferences(
    subscriber: Subscriber,
    topics: list[str],
    frequency: str,
    origin: Origin,
    *,
    alerts: bool | None = None,
    language: str | None = None,
    timezone: str | None = None,
) -> None:
    """Change what and how often a reader receives (``alerts``, ``language``: None leaves
    it as it is; ``timezone``: an IANA zone, "" for the site's, None leaves it as it is)."""
    subscriber.topics = topics
    subscriber.frequency = frequency
    if alerts is not None:
        subscriber.alerts = alerts
    if language is not None:
        subscriber.language = language
    detail: dict[str, object] = {
        "topics": topics,
        "frequency": frequency,
        "alerts": subscriber.alerts,
    }
    if subscriber.language is not None:
        detail["language"] = subscriber.language
    if timezone is not None:
        subscriber.timezone = detail["timezone"] = zones.clean(timezone)
    consent.record(subscriber.id, consent.Action.PREFERENCES, origin, detail)


def receiving(subscriber: Subscriber) -> bool:
    """Whether the reader still asks for the newsletter (pending or active), not withdrawn."""
    return subscriber.status in CONSENTING


def by_uid(uid: str) -> Subscriber | None:
    return db.session.scalar(select(Subscriber).where(Subscriber.uid == uid))


def language_of(uid: str) -> str | None:
    """The language a reader chose (None: the site's, or no such reader)."""
    language: str | None = db.session.scalar(
        select(Subscriber.language).where(Subscriber.uid == uid)
    )
    return language


def by_email(email: str) -> Subscriber | None:
    """The reader with this normalized address, if any."""
    return db.session.scalar(select(Subscriber).where(Subscriber.email == email))


def resend_confirmation(
    uid: str, nonce: object, may_mail: Callable[[str], bool], request: str | None = None
) -> None:
    """Send the confirmation link again to a still-pending reader whose link had ``nonce``
    (and answered signup request ``request``, which the fresh link answers too).

    ``may_mail`` is asked last, with the address: the per-address daily limit counts only
    mails that would really go out.
    """
    subscriber = by_uid(uid)
    if (
        subscriber is not None
        and subscriber.status != Status.ACTIVE
        and subscriber.confirm_nonce == nonce
        and may_mail(subscriber.email)
    ):
        chosen = _request_choices(subscriber, request) if request is not None else None
        language = chosen.language if chosen is not None else subscriber.language
        notices.enqueue(subscriber.id, Notice.CONFIRM, request, language)
