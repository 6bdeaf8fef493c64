"""Reader mails are sent once per task, however often the broker delivers the task."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from newsletter import create_app
from newsletter.db.models import SentNotice, Subscriber
from newsletter.errors import TransientMailError
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.tasks import send_signup_mail
from tests.conftest import _fresh_schema, add_subscriber, base_config
from tests.support.celery_worker import CeleryWorker
from tests.support.smtp_server import SMTPTestServer


def pending_reader(app: Flask) -> int:
    add_subscriber(app, status="pending", confirm_nonce="nonce")
    with app.app_context():
        return int(db.session.scalar(select(Subscriber.id)) or 0)


def test_a_confirmation_task_run_twice_with_its_key_sends_one_mail(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    subscriber_id = pending_reader(app)
    with app.app_context():
        for _ in range(2):
            send_signup_mail.apply(args=(subscriber_id, "confirm", "key-1"), throw=True)
        assert [message.recipient for message in outbox] == ["reader@example.com"]
        # Another request (another key) is another mail.
        send_signup_mail.apply(args=(subscriber_id, "confirm", "key-2"), throw=True)
        assert len(outbox) == 2
        assert set(db.session.scalars(select(SentNotice.key))) == {"key-1", "key-2"}


def test_a_mail_the_server_deferred_is_sent_by_the_retry_with_the_same_key(
    database_url: str, tmp_path: Path, smtp_server: SMTPTestServer
) -> None:
    app = create_app({**base_config(database_url, tmp_path), **smtp_server.app_config()})
    _fresh_schema(app)
    subscriber_id = pending_reader(app)
    smtp_server.fail("rcpt", "451 4.7.1 try again later", times=1)
    with app.app_context():
        # Run the task's body as the worker would, without Celery's own retry loop.
        with pytest.raises(TransientMailError):
            send_signup_mail.run(subscriber_id, "confirm", "key-1")
        assert db.session.scalar(select(SentNotice.key)) is None
        send_signup_mail.run(subscriber_id, "confirm", "key-1")
        send_signup_mail.run(subscriber_id, "confirm", "key-1")
    assert [message.rcpt_tos for message in smtp_server.messages] == [["reader@example.com"]]


@pytest.mark.services
def test_a_worker_given_the_same_task_twice_mails_the_reader_once(
    live_worker: CeleryWorker, worker_app: Flask
) -> None:
    subscriber_id = pending_reader(worker_app)
    celery = worker_app.extensions["celery"]
    for _ in range(2):  # what a redelivery after a lost acknowledgement looks like
        celery.send_task(
            "newsletter.tasks.send_signup_mail",
            args=(subscriber_id, "confirm", "same-key"),
            queue="signup",
        )
    celery.send_task(
        "newsletter.tasks.send_signup_mail",
        args=(subscriber_id, "confirm", "next-key"),
        queue="signup",
    )
    live_worker.smtp.wait_for(2)
    # Both copies of the first task and the second task have run once the second mail is in;
    # wait a little longer for a late third.
    with pytest.raises(pytest.fail.Exception):
        live_worker.smtp.wait_for(3, timeout=2)
    assert len(live_worker.smtp.messages) == 2
