"""The mails about a subscription: the confirmation link, "you are already subscribed", and
the welcome once confirmed."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from enum import StrEnum

from flask import current_app
from sqlalchemy import delete

from newsletter import i18n, jobs
from newsletter.clock import utcnow
from newsletter.config import WEEKDAYS
from newsletter.db.dialect import upsert
from newsletter.db.models import SentNotice, Status, Subscriber
from newsletter.digests import windows
from newsletter.errors import OutcomeUnknown, TransientMailError
from newsletter.extensions import db
from newsletter.mail import render
from newsletter.mail.backends import get_backend
from newsletter.mail.message import build, mailbox
from newsletter.mail.throttle import Throttle
from newsletter.readers import topics
from newsletter.tokens import Purpose, sign
from newsletter.urls import external_url

log = logging.getLogger(__name__)


class Notice(StrEnum):
    """Which mail, if any, a signup request calls for."""

    CONFIRM = "confirm"
    ALREADY_SUBSCRIBED = "already-subscribed"
    WELCOME = "welcome"


def enqueue(
    subscriber_id: int, notice: Notice, request: str | None = None, language: str | None = None
) -> None:
    """Send ``notice`` to the reader once the caller's transaction commits.

    ``request``: the key of the signup request a confirmation link answers; ``language``:
    that request's (None: the reader's own).
    """
    key = secrets.token_hex(8)
    if language is not None:
        jobs.enqueue(jobs.SIGNUP_MAIL, subscriber_id, str(notice), key, request, language)
    elif request is not None:
        jobs.enqueue(jobs.SIGNUP_MAIL, subscriber_id, str(notice), key, request)
    else:
        jobs.enqueue(jobs.SIGNUP_MAIL, subscriber_id, str(notice), key)


def send(
    subscriber_id: int,
    notice: Notice,
    key: str | None = None,
    request: str | None = None,
    language: str | None = None,
) -> None:
    """Send the notice to the reader, unless their state no longer calls for it.

    ``key`` names this one mail: a second delivery of the same task finds it already sent
    and sends nothing. (Tasks queued without one, by earlier versions, are sent as asked.)
    The mail speaks ``language``, else the reader's.
    """
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return
    speaks = i18n.reader_language(language or subscriber.language)
    if notice == Notice.CONFIRM:
        # Re-read state: the reader may have confirmed or withdrawn since this was queued.
        if subscriber.status == Status.ACTIVE or subscriber.confirm_nonce is None:
            return
        payload: dict[str, object] = {"s": subscriber.uid, "n": subscriber.confirm_nonce}
        if request is not None:
            payload["r"] = request
        token = sign(Purpose.CONFIRM, payload)
        rendered = render.render(
            "confirm", speaks, confirm_url=external_url("signup.confirm_page", token=token)
        )
    elif notice in (Notice.ALREADY_SUBSCRIBED, Notice.WELCOME):
        if subscriber.status != Status.ACTIVE:
            return  # withdrawn since: neither "you are subscribed" nor a welcome is true now
        rendered = render.render(
            "already_subscribed" if notice == Notice.ALREADY_SUBSCRIBED else "welcome",
            speaks,
            **_reader_links(subscriber),
            **(_schedule(subscriber) if notice == Notice.WELCOME else {}),
        )
    else:
        raise ValueError(f"unknown notice {notice!r}")
    # The name is left out of these mails: a signup form must not be a way to put
    # somebody else's words into a message sent to an address they typed.
    message = build(
        to=mailbox(subscriber.email),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
    )
    # The relay's send rate covers these too: an import can queue thousands of them at once.
    Throttle.for_app().wait()
    if key is not None and not _claim(key, subscriber_id):
        return
    try:
        with get_backend() as backend:
            backend.send(message)
    except OutcomeUnknown as exc:
        # The relay may have it: the key stays claimed, so no retry mails the reader twice.
        log.warning("notice %s to reader %s: %s", notice.value, subscriber_id, exc)
    except TransientMailError:
        if key is not None:
            # Not handed over: the task's retry, with the same key, may send it.
            db.session.execute(delete(SentNotice).where(SentNotice.key == key))
            db.session.commit()
        raise


def _reader_links(subscriber: Subscriber) -> dict[str, str]:
    return {
        "preferences_url": external_url(
            "manage.preferences", token=sign(Purpose.PREFERENCES, {"s": subscriber.uid})
        ),
        "unsubscribe_url": external_url(
            "manage.unsubscribe_page", token=sign(Purpose.UNSUBSCRIBE, {"s": subscriber.uid})
        ),
    }


def _schedule(subscriber: Subscriber) -> dict[str, object]:
    """What the welcome says the reader will get, and when: by the site's own clock, or
    with SEND_IN_READER_TIME by the reader's."""
    config = current_app.config
    names = topics.available()
    theirs = set(subscriber.topics)
    chosen = [name for slug, name in names.items() if slug in theirs]  # the forms' order
    zone = str(config["TIMEZONE"])
    # 0 is Monday; its name in the mail's language is found when the mail is rendered.
    weekday = WEEKDAYS.index(str(config["DIGEST_WEEKDAY"]))
    if windows.enabled() and subscriber.timezone is not None:
        zone = subscriber.timezone
        if windows.day_later(zone, utcnow()):
            # Their hour comes before the site's: the weekly edition reaches them next day.
            weekday = (weekday + 1) % 7
    return {
        "topic_names": chosen,
        "every_topic": len(chosen) == len(names),
        "frequency": subscriber.frequency,
        "hour": f"{int(config['DIGEST_HOUR']):02d}:00",
        "weekday": weekday,
        "timezone": zone,
    }


def _claim(key: str, subscriber_id: int) -> bool:
    """Record ``key`` as sent, committed before the mail goes; False if it already was.

    So a task that dies after handing the mail over is not mailed again when it is
    delivered again; one that dies before loses this mail, and the reader can ask anew.
    """
    table = SentNotice.__table__
    new = db.session.execute(
        upsert(table).on_conflict_do_nothing(index_elements=["key"]).returning(table.c.key),
        {"key": key, "subscriber_id": subscriber_id, "sent_at": utcnow()},
    ).first()
    db.session.commit()
    return new is not None


# A task is delivered again within the broker's visibility timeout (an hour) and retried
# for a few hours at most; a week later its key can only be noise.
KEEP_KEYS = timedelta(days=7)


def forget_sent() -> int:
    """Drop the keys of mails sent more than ``KEEP_KEYS`` ago; returns how many."""
    result = db.session.execute(
        delete(SentNotice).where(SentNotice.sent_at < utcnow() - KEEP_KEYS),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    return int(getattr(result, "rowcount", 0) or 0)
