"""Enqueue after commit: a task enqueued in a transaction goes out only when it commits."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, select

from newsletter import jobs
from newsletter.db.models import Subscriber
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.readers import notices
from newsletter.readers.consent import Origin
from newsletter.readers.notices import Notice
from newsletter.readers.subscriptions import request_signup
from tests.conftest import add_subscriber

ORIGIN = Origin(source="test")


def test_a_signup_mail_goes_when_its_transaction_commits_and_not_before(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    with app.app_context():
        request_signup("reader@example.com", "", ["politics"], "weekly", ORIGIN)
        assert outbox == []
        db.session.commit()
    assert [message.recipient for message in outbox] == ["reader@example.com"]


def test_a_signup_rolled_back_sends_nothing_even_after_a_later_commit(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    with app.app_context():
        request_signup("reader@example.com", "", ["politics"], "weekly", ORIGIN)
        db.session.rollback()
        db.session.scalar(select(func.count()).select_from(Subscriber))  # a new transaction
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert outbox == []


def test_a_task_enqueued_in_a_savepoint_waits_for_the_outer_commit_or_dies_with_it(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    with app.app_context():
        db.session.scalar(select(func.count()).select_from(Subscriber))  # the outer transaction
        with db.session.begin_nested():
            request_signup("kept@example.com", "", ["politics"], "weekly", ORIGIN)
        assert outbox == []  # released, but the outer transaction is still open
        savepoint = db.session.begin_nested()
        request_signup("dropped@example.com", "", ["politics"], "weekly", ORIGIN)
        savepoint.rollback()
        db.session.commit()
    assert [message.recipient for message in outbox] == ["kept@example.com"]


def test_a_task_enqueued_outside_a_transaction_goes_at_once(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    add_subscriber(app, status="pending", confirm_nonce="nonce")
    with app.app_context():
        subscriber_id = db.session.scalar(select(Subscriber.id))
        db.session.commit()
        assert not db.session().in_transaction()
        notices.enqueue(int(subscriber_id or 0), Notice.CONFIRM)
        assert len(outbox) == 1


@pytest.mark.services
def test_the_broker_gets_the_task_only_when_the_transaction_commits(
    broker_app: tuple[Flask, object],
) -> None:
    app, client = broker_app
    with app.app_context():
        assert not jobs.in_process()
        request_signup("reader@example.com", "", ["politics"], "weekly", ORIGIN)
        assert client.llen("signup") == 0  # type: ignore[attr-defined]
        db.session.commit()
        assert client.llen("signup") == 1  # type: ignore[attr-defined]
        request_signup("other@example.com", "", ["politics"], "weekly", ORIGIN)
        db.session.rollback()
        assert client.llen("signup") == 1  # type: ignore[attr-defined]
