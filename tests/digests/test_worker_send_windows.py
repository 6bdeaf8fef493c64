"""Send windows through a real Celery worker whose clock the test moves (SEND_IN_READER_TIME)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import redis
from flask import Flask
from sqlalchemy import select, update

from newsletter import clock as app_clock
from newsletter import create_app, jobs
from newsletter.db.models import Delivery, Subscriber
from newsletter.extensions import db
from tests.conftest import _fresh_schema, base_config
from tests.support.celery_worker import CeleryWorker
from tests.support.clock import FakeClock
from tests.support.digest_helpers import add_article, add_reader
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.services

# A broker database of its own: no other worker of the suite takes these tasks.
BROKER = "redis://127.0.0.1:6379/11"


@pytest.fixture
def shared_clock(tmp_path: Path) -> Iterator[FakeClock]:
    """One moment for this process and the worker (which reads it from the file)."""
    fake = FakeClock(datetime(2027, 3, 13, 7, 0, tzinfo=UTC), path=tmp_path / "clock.txt")
    app_clock.use(fake)
    yield fake
    app_clock.use(None)


def _queue(app: Flask, name: str, *args: object) -> None:
    """Hand the worker one task, as beat would."""
    with app.app_context():
        jobs.enqueue(name, *args)


def _received(smtp: SMTPTestServer) -> list[tuple[str, datetime]]:
    return [(m.rcpt_tos[0], parsedate_to_datetime(m.header("Date"))) for m in smtp.messages]


def test_a_worker_sends_each_reader_at_their_hour_and_never_before(
    postgres_url: str, tmp_path: Path, smtp_server: SMTPTestServer, shared_clock: FakeClock
) -> None:
    redis.Redis.from_url(BROKER).flushdb()
    settings = {"NEWSLETTER_SEND_IN_READER_TIME": "true", "NEWSLETTER_LEASE_SECONDS": "60"}
    with CeleryWorker(
        postgres_url,
        smtp_server,
        broker_url=BROKER,
        log_file=tmp_path / "worker.log",
        extra_env=settings,
        clock_file=shared_clock.path,
    ) as worker:
        app = create_app(
            {
                **base_config(postgres_url, tmp_path),
                **worker.app_config(),
                "SEND_IN_READER_TIME": True,
                "LEASE_SECONDS": 60,
            }
        )
        _fresh_schema(app)
        add_article(app, "Council approves the bridge")
        for email, zone in [
            ("site@example.org", None),
            ("ny@example.org", "America/New_York"),
            ("berlin@example.org", "Europe/Berlin"),
        ]:
            add_reader(app, email)
            with app.app_context():
                db.session.execute(
                    update(Subscriber).where(Subscriber.email == email).values(timezone=zone)
                )
                db.session.commit()

        # Beat's moment: the edition is planned by the worker, at the worker's 7:00.
        _queue(app, jobs.SCHEDULED_DIGEST, "daily")
        smtp_server.wait_for(1)
        worker.wait_idle()
        assert _received(smtp_server) == [
            ("site@example.org", datetime(2027, 3, 13, 7, 0, tzinfo=UTC))
        ]

        # A second before New York's 7:00, hours after planning and well past the lease, the
        # queue idle: neither the release nor the recovery pass sends anything more.
        shared_clock.set(datetime(2027, 3, 13, 11, 59, 59, tzinfo=UTC))
        _queue(app, jobs.RELEASE_WINDOWS)
        worker.wait_idle()
        _queue(app, jobs.RECOVER_DELIVERIES)
        worker.wait_idle()
        assert len(smtp_server.messages) == 1
        with app.app_context():
            assert Counter(db.session.scalars(select(Delivery.state))) == {"sent": 1, "queued": 2}

        shared_clock.set(datetime(2027, 3, 13, 12, 0, tzinfo=UTC))
        _queue(app, jobs.RELEASE_WINDOWS)
        smtp_server.wait_for(2)
        # Berlin's 7:00 on the reader's next day (Berlin is ahead of the site's UTC).
        shared_clock.set(datetime(2027, 3, 14, 6, 0, tzinfo=UTC))
        _queue(app, jobs.RELEASE_WINDOWS)
        smtp_server.wait_for(3)
        # The next day's edition: the site's readers at once; New York, whose clocks went
        # forward last night, at 7:00 EDT.
        shared_clock.set(datetime(2027, 3, 14, 7, 0, tzinfo=UTC))
        add_article(app, "Tram line extended")
        _queue(app, jobs.SCHEDULED_DIGEST, "daily")
        smtp_server.wait_for(4)
        shared_clock.set(datetime(2027, 3, 14, 11, 0, tzinfo=UTC))
        _queue(app, jobs.RELEASE_WINDOWS)
        _queue(app, jobs.RELEASE_WINDOWS)  # beat's next tick, or a second beat: nothing more
        smtp_server.wait_for(5)
        worker.wait_idle()

        received = _received(smtp_server)
        assert received == [
            ("site@example.org", datetime(2027, 3, 13, 7, 0, tzinfo=UTC)),
            ("ny@example.org", datetime(2027, 3, 13, 12, 0, tzinfo=UTC)),
            ("berlin@example.org", datetime(2027, 3, 14, 6, 0, tzinfo=UTC)),
            ("site@example.org", datetime(2027, 3, 14, 7, 0, tzinfo=UTC)),
            ("ny@example.org", datetime(2027, 3, 14, 11, 0, tzinfo=UTC)),
        ]
        assert Counter(to for to, _ in received) == {
            "site@example.org": 2,
            "ny@example.org": 2,
            "berlin@example.org": 1,
        }
        with app.app_context():
            states = Counter(db.session.scalars(select(Delivery.state)))
            assert states == {"sent": 5, "queued": 1}  # Berlin's second waits for 15 March
            db.session.remove()
            db.engine.dispose()
