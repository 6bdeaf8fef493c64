"""The mails a signup calls for: the confirmation link, or "you are already subscribed"."""

from __future__ import annotations

from enum import StrEnum

from newsletter.db.models import Subscriber
from newsletter.extensions import db
from newsletter.mail import render
from newsletter.mail.backends import get_backend
from newsletter.mail.message import build, mailbox
from newsletter.mail.throttle import Throttle
from newsletter.tokens import Purpose, sign
from newsletter.urls import external_url


class Notice(StrEnum):
    """Which mail, if any, a signup request calls for."""

    CONFIRM = "confirm"
    ALREADY_SUBSCRIBED = "already-subscribed"


def send(subscriber_id: int, notice: Notice) -> None:
    """Send the notice to the reader, unless their state no longer calls for it."""
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return
    if notice == Notice.CONFIRM:
        # Re-read state: the reader may have confirmed or withdrawn since this was queued.
        if subscriber.status == "active" or subscriber.confirm_nonce is None:
            return
        token = sign(Purpose.CONFIRM, {"s": subscriber.uid, "n": subscriber.confirm_nonce})
        rendered = render.render(
            "confirm", confirm_url=external_url("signup.confirm_page", token=token)
        )
    elif notice == Notice.ALREADY_SUBSCRIBED:
        if subscriber.status != "active":
            return
        rendered = render.render(
            "already_subscribed",
            preferences_url=external_url(
                "manage.preferences", token=sign(Purpose.PREFERENCES, {"s": subscriber.uid})
            ),
            unsubscribe_url=external_url(
                "manage.unsubscribe_page", token=sign(Purpose.UNSUBSCRIBE, {"s": subscriber.uid})
            ),
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
    with get_backend() as backend:
        backend.send(message)
