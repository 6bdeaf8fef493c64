"""Celery tasks, and how the web side hands work to them."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from flask import Flask, Response, after_this_request, current_app, has_request_context
from sqlalchemy import select

from . import delivery, editions
from .errors import MailError, TransientMailError
from .extensions import db
from .mail import render
from .mail.backends import get_backend
from .mail.message import build, mailbox
from .mail.throttle import Throttle
from .models import Edition, Subscriber, utcnow
from .subscriptions import Notice
from .tokens import Purpose, sign
from .web.links import external_url

log = logging.getLogger(__name__)


def enqueue(task: Task[Any, Any], *args: Any) -> None:
    """Hand ``task`` to the broker, or without one run it after the response is sent.

    Callers commit first: a worker must find the rows the task names.
    """
    if current_app.config["BROKER_URL"]:
        # The arguments are a few ids and words, whose plain repr is the text Celery's
        # saferepr would put in the message for monitors, at a fraction of its cost.
        # (argsrepr and kwargsrepr are documented options that celery-types lacks.)
        task.apply_async(args, argsrepr=repr(args), kwargsrepr="{}")  # type: ignore[call-arg]
        return
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if has_request_context() and not app.testing:
        # In-process mode: the reader's answer must not wait on (or time) the mail server.
        @after_this_request
        def _later(response: Response) -> Response:
            response.call_on_close(lambda: _run_here(app, task, args))
            return response

        return
    _run_here(app, task, args)


def _run_here(app: Flask, task: Task[Any, Any], args: tuple[Any, ...]) -> None:
    with app.app_context():
        try:
            task.apply(args=args, throw=app.testing)
        except MailError:
            if app.testing:
                raise
            log.exception("in-process task %s failed", task.name)


@shared_task(
    name="newsletter.tasks.send_signup_mail",
    autoretry_for=(TransientMailError,),
    retry_backoff=30,
    retry_backoff_max=3600,
    max_retries=8,
)
def send_signup_mail(subscriber_id: int, notice: str) -> None:
    """Send the confirmation link (or, to an active reader, an "already subscribed" notice)."""
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


@shared_task(name="newsletter.tasks.send_digest_batch")
def send_digest_batch(edition_id: int, first_id: int, last_id: int) -> dict[str, int]:
    """Send one id range of an edition; a redelivered or repeated task finds nothing left."""
    result = delivery.send_batch(edition_id, first_id, last_id)
    if result.retry_at is not None and current_app.config["BROKER_URL"]:
        # Without a broker, the command that started the send waits and retries itself.
        delay = max(1.0, (result.retry_at - utcnow()).total_seconds())
        send_digest_batch.apply_async((edition_id, first_id, last_id), countdown=delay)
    if result.stopped:
        log.warning(
            "edition %s batch %s-%s stopped: %s", edition_id, first_id, last_id, result.stopped
        )
    return {"sent": result.sent, "failed": result.failed, "deferred": result.deferred}


def dispatch(edition_id: int) -> int:
    """Queue a batch task for each id range of the edition's waiting rows."""
    ranges = delivery.batches(edition_id, int(current_app.config["BATCH_SIZE"]))
    for first_id, last_id in ranges:
        send_digest_batch.delay(edition_id, first_id, last_id)
    if not ranges:
        delivery.finish_if_done(edition_id)
    return len(ranges)


@shared_task(name="newsletter.tasks.send_scheduled_digest")
def send_scheduled_digest(frequency: str) -> int | None:
    """Beat's entry: resume an unfinished edition of this frequency, or plan the next one."""
    edition = editions.unfinished(frequency) or editions.plan(frequency)
    if edition is None:
        log.info("no new articles for the %s digest", frequency)
        return None
    dispatch(edition.id)
    return edition.id


@shared_task(name="newsletter.tasks.recover_deliveries")
def recover_deliveries() -> dict[str, int]:
    """Reclaim rows of vanished workers and queue again what is waiting."""
    found = delivery.recover()
    for edition_id in db.session.scalars(select(Edition.id).where(Edition.state == "sending")):
        dispatch(edition_id)
    return found
