"""SMTP faults during a digest sent by a real Celery worker through Redis and PostgreSQL."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from newsletter import create_app
from newsletter.db.models import Delivery, Subscriber, Suppression
from newsletter.extensions import db
from newsletter.readers.addresses import address_hash
from tests.conftest import _fresh_schema, base_config
from tests.digests.test_worker_digest import seed, wait_until_done
from tests.support.celery_worker import CeleryWorker, running_worker
from tests.support.smtp_server import DROP, HANG, LOSE_REPLY, SMTPTestServer

pytestmark = pytest.mark.services

# A broker database of its own, so the suite's shared worker never takes these tasks.
BROKER = "redis://127.0.0.1:6379/12"


@pytest.fixture(scope="module")
def fault_worker(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    """A worker that retries within a second and gives the server one second to answer."""
    with running_worker(
        postgres_url,
        tmp_path_factory.mktemp("fault-worker"),
        broker_url=BROKER,
        extra_env={
            "NEWSLETTER_RETRY_BASE_SECONDS": "0.2",
            "NEWSLETTER_SMTP_TIMEOUT": "1",
            "NEWSLETTER_BATCH_SIZE": "25",
        },
    ) as worker:
        yield worker


@pytest.fixture
def fault_app(fault_worker: CeleryWorker, tmp_path: Path) -> Iterator[Flask]:
    fault_worker.reset()
    app = create_app(
        {**base_config(fault_worker.database_url, tmp_path), **fault_worker.app_config()}
    )
    _fresh_schema(app)
    yield app
    with app.app_context():
        db.engine.dispose()


def send(app: Flask) -> int:
    result = app.test_cli_runner().invoke(
        args=["digest", "send", "--frequency", "daily", "--no-wait"]
    )
    assert result.exit_code == 0, result.output
    return int(re.search(r"Edition (\d+)", result.output).group(1))  # type: ignore[union-attr]


def copies(server: SMTPTestServer) -> Counter[str]:
    counted: Counter[str] = Counter()
    for message in server.messages:
        counted.update(message.rcpt_tos)
    return counted


def rows(app: Flask, edition_id: int) -> dict[str, tuple[str, int, str | None]]:
    with app.app_context():
        found = db.session.execute(
            select(Subscriber.email, Delivery.state, Delivery.attempts, Delivery.last_error)
            .join(Delivery)
            .where(Delivery.edition_id == edition_id)
        )
        return {email: (state, attempts, error) for email, state, attempts, error in found}


def test_greylisting_451_then_250_is_delivered_once_after_a_retry(
    fault_worker: CeleryWorker, fault_app: Flask
) -> None:
    readers = sorted(seed(fault_app, 30))
    fault_worker.smtp.fail("rcpt", "451 4.7.1 Greylisted, try again later", times=3)
    edition_id = send(fault_app)
    assert wait_until_done(fault_app, edition_id, within=60) == {"sent": 30}
    assert copies(fault_worker.smtp) == Counter({email: 1 for email in readers})
    retried = [
        email for email, (_, attempts, _) in rows(fault_app, edition_id).items() if attempts == 2
    ]
    assert len(retried) == 3


def test_550_suppresses_those_addresses_and_the_others_are_delivered(
    fault_worker: CeleryWorker, fault_app: Flask
) -> None:
    readers = sorted(seed(fault_app, 30))
    gone = {readers[3], readers[17]}
    fault_worker.smtp.fail("rcpt", "550 5.1.1 The email account does not exist", recipients=gone)
    edition_id = send(fault_app)
    counts = wait_until_done(fault_app, edition_id, within=60)
    assert counts == {"sent": 28, "failed": 2}
    assert copies(fault_worker.smtp) == Counter({e: 1 for e in readers if e not in gone})
    with fault_app.app_context():
        assert set(db.session.scalars(select(Suppression.address_hash))) == {
            address_hash(e) for e in gone
        }
        statuses = dict(db.session.execute(select(Subscriber.email, Subscriber.status)).all())
    assert {e for e, s in statuses.items() if s == "bounced"} == gone


def test_connection_dropped_before_the_content_is_retried_and_delivered_once(
    fault_worker: CeleryWorker, fault_app: Flask
) -> None:
    readers = sorted(seed(fault_app, 30))
    fault_worker.smtp.fail("rcpt", DROP, times=2)
    edition_id = send(fault_app)
    assert wait_until_done(fault_app, edition_id, within=60) == {"sent": 30}
    assert copies(fault_worker.smtp) == Counter({email: 1 for email in readers})


def test_server_that_never_answers_times_out_and_is_retried(
    fault_worker: CeleryWorker, fault_app: Flask
) -> None:
    readers = sorted(seed(fault_app, 30))
    fault_worker.smtp.fail("mail", HANG, times=1)
    edition_id = send(fault_app)
    assert wait_until_done(fault_app, edition_id, within=90) == {"sent": 30}
    assert copies(fault_worker.smtp) == Counter({email: 1 for email in readers})
    timed_out = [
        email
        for email, (_, attempts, error) in rows(fault_app, edition_id).items()
        if attempts == 2 and "timed out" in (error or "")
    ]
    assert len(timed_out) == 1, rows(fault_app, edition_id)
    # The worker lived through it and is still taking work.
    assert fault_worker.ping()


def test_a_reply_lost_after_the_final_dot_is_unknown_sent_once_and_re_offered_after_review(
    fault_worker: CeleryWorker, fault_app: Flask
) -> None:
    readers = sorted(seed(fault_app, 60))
    # The relay keeps these messages and loses the replies...
    kept = set(readers[5:45:10])
    # ...and hangs up on these after the whole message was written, without keeping them.
    dropped = set(readers[10:50:10])
    fault_worker.smtp.fail("data", LOSE_REPLY, recipients=kept)
    fault_worker.smtp.fail("data", DROP, recipients=dropped)
    edition_id = send(fault_app)
    counts = wait_until_done(fault_app, edition_id, within=90)
    assert counts == {"sent": 52, "unknown": 8}
    # Nobody got a second copy, and nothing says "sent" about a message that may not be.
    assert copies(fault_worker.smtp) == Counter(
        {email: 1 for email in readers if email not in dropped}
    )
    found = rows(fault_app, edition_id)
    for email in kept | dropped:
        state, attempts, error = found[email]
        assert (state, attempts) == ("unknown", 1), email
        assert "RFC 1047" in (error or "")

    runner = fault_app.test_cli_runner()
    listed = runner.invoke(args=["digest", "unknowns", str(edition_id)])
    assert listed.exit_code == 0, listed.output
    assert "8 messages whose outcome is unknown" in listed.output
    assert all(email in listed.output for email in kept | dropped)
    # The operator checks the relay's log and re-offers the ones it never kept.
    fault_worker.smtp.clear_faults()
    offered = runner.invoke(
        args=["digest", "reoffer", str(edition_id), "--yes"]
        + [arg for email in sorted(dropped) for arg in ("--address", email)]
    )
    assert offered.exit_code == 0, offered.output
    assert "Re-offered edition" in offered.output and "to 4 readers" in offered.output
    assert wait_until_done(fault_app, edition_id, within=60) == {"sent": 56, "unknown": 4}
    assert copies(fault_worker.smtp) == Counter({email: 1 for email in readers})
    status = runner.invoke(args=["digest", "status", str(edition_id)])
    assert "done" in status.output and "RFC 1047" in status.output
