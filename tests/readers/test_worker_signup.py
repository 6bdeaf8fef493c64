"""Signup mail through the real parts: web app -> Redis -> Celery worker process -> SMTP.

The web app runs in this process; the confirmation mail is rendered and sent by a separate
``celery worker`` process (tests/support/celery_worker.py) to a real SMTP server on loopback, and
the reader's click lands in PostgreSQL.
"""

from __future__ import annotations

import re
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter.db.models import Subscriber
from newsletter.extensions import db
from newsletter.mail.backends import MemoryBackend
from tests.conftest import form_fields, signup
from tests.support.celery_worker import BASE_URL, CeleryWorker
from tests.support.smtp_server import ReceivedMessage

pytestmark = pytest.mark.services


def link_in(received: ReceivedMessage, path: str) -> str:
    """The first link in the text part whose path starts with ``path``."""
    plain = received.parsed().get_body(("plain",))
    assert plain is not None, "the mail has no text part"
    found = re.search(rf"https?://\S+{re.escape(path)}\S+", plain.get_content())
    assert found, f"no {path} link in the mail"
    return found.group(0)


def status_of(app: Flask, email: str) -> str | None:
    with app.app_context():
        return db.session.scalar(select(Subscriber.status).where(Subscriber.email == email))


def confirm(client: FlaskClient, url: str) -> None:
    assert url.startswith(f"{BASE_URL}/confirm/")
    path = url.removeprefix(BASE_URL)
    page = client.get(path)
    assert page.status_code == 200
    done = client.post(path, data=form_fields(page.get_data(as_text=True)))
    assert done.status_code == 200, done.get_data(as_text=True)


def test_confirmation_mail_is_sent_by_the_worker_and_its_link_confirms(
    live_worker: CeleryWorker, worker_app: Flask
) -> None:
    client = worker_app.test_client()
    answer = signup(client, "Reader@Example.com")
    assert answer.status_code == 200
    assert "Check your inbox" in answer.get_data(as_text=True)

    [received] = live_worker.smtp.wait_for(1)
    assert received.mail_from == "newsletter@ledger.example"
    assert received.rcpt_tos == ["reader@example.com"]
    assert received.header("To") == "reader@example.com"
    assert received.header("Subject") == "Confirm your subscription to The Daily Ledger"
    assert not received.tls and not received.smtputf8
    assert status_of(worker_app, "reader@example.com") == "pending"

    assert worker_app.config["MAIL_BACKEND"] == "memory" and MemoryBackend.outbox == []

    confirm(client, link_in(received, "/confirm/"))
    assert status_of(worker_app, "reader@example.com") == "active"
    # Confirming sends the welcome mail, through the worker too, and nothing more.
    welcome = live_worker.smtp.wait_for(2)[1]
    assert welcome.header("Subject") == "Welcome to The Daily Ledger"
    assert "/preferences/" in welcome.data.decode() and "/confirm/" not in welcome.data.decode()
    time.sleep(0.5)
    assert len(live_worker.smtp.messages) == 2


def test_signing_up_again_when_active_sends_a_notice_not_a_link(
    live_worker: CeleryWorker, worker_app: Flask
) -> None:
    client = worker_app.test_client()
    signup(client, "reader@example.com")
    [first] = live_worker.smtp.wait_for(1)
    confirm(client, link_in(first, "/confirm/"))
    live_worker.smtp.wait_for(2)  # the welcome mail

    again = signup(client, "reader@example.com")
    assert again.status_code == 200
    second = live_worker.smtp.wait_for(3)[2]
    assert second.rcpt_tos == ["reader@example.com"]
    assert second.header("Subject") == "You're already subscribed to The Daily Ledger"
    assert "/confirm/" not in second.data.decode()
    assert status_of(worker_app, "reader@example.com") == "active"


def test_a_non_ascii_address_is_mailed_over_smtputf8_by_the_worker(
    live_worker: CeleryWorker, worker_app: Flask
) -> None:
    client = worker_app.test_client()
    signup(client, "Jürgen@Example.org")

    [received] = live_worker.smtp.wait_for(1)
    assert received.smtputf8
    assert received.rcpt_tos == ["jürgen@example.org"]
    assert received.header("To") == "jürgen@example.org"
    assert "jürgen@example.org".encode() in received.data
    confirm(client, link_in(received, "/confirm/"))
    assert status_of(worker_app, "jürgen@example.org") == "active"
