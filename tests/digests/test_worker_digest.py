"""Digests through real Celery worker processes, Redis, PostgreSQL and an SMTP server."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import timedelta

import pytest
from flask import Flask

from newsletter.clock import utcnow
from newsletter.db.models import Article, Subscriber
from newsletter.digests import ledger
from newsletter.extensions import db
from tests.support.celery_worker import CeleryWorker
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.services

SECTIONS = [("Analytics", "analytics"), ("Business", "business"), ("Technology", "technology")]
TOPIC_SETS = [("analytics",), ("business", "technology"), ("analytics", "business", "technology")]


def seed(app: Flask, readers: int) -> dict[str, set[str]]:
    """Ten articles in three sections and readers of three topic sets.

    Returns each reader's address with the article URLs their digest must hold.
    """
    now = utcnow()
    urls: dict[str, set[str]] = {}
    with app.app_context():
        for index in range(10):
            category, topic = SECTIONS[index % 3]
            url = f"https://ledger.example/{topic}/story-{index}"
            urls.setdefault(topic, set()).add(url)
            db.session.add(
                Article(
                    guid=f"urn:ledger:{index}",
                    url=url,
                    title=f"{category} story {index}",
                    summary="<p>What happened, and why it matters.</p>",
                    category=category,
                    topic=topic,
                    published_at=now - timedelta(minutes=index + 1),
                )
            )
        expected: dict[str, set[str]] = {}
        for index in range(readers):
            email = f"reader{index}@example.org"
            subscriber = Subscriber(
                email=email, name=f"Reader {index}", status="active", frequency="daily"
            )
            subscriber.topics = list(TOPIC_SETS[index % 3])
            db.session.add(subscriber)
            expected[email] = set().union(*(urls[t] for t in TOPIC_SETS[index % 3]))
        db.session.commit()
    return expected


def copies_by_recipient(smtp: SMTPTestServer) -> Counter[str]:
    """Copies per recipient; the same Message-ID twice counts twice."""
    counts: Counter[str] = Counter()
    for message in smtp.messages:
        counts.update(message.rcpt_tos)
    return counts


def wait_until_done(app: Flask, edition_id: int, within: float = 120.0) -> dict[str, int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with app.app_context():
            counts = ledger.counts(edition_id)
            db.session.remove()
        if not any(counts.get(s, 0) for s in ("queued", "sending", "attempting")):
            return counts
        time.sleep(0.2)
    raise AssertionError(f"edition {edition_id} not done: {counts}")


def test_an_edition_reaches_500_readers_once_each_with_their_topics(
    live_worker: CeleryWorker, worker_app: Flask
) -> None:
    expected = seed(worker_app, 500)
    result = worker_app.test_cli_runner().invoke(
        args=["digest", "send", "--frequency", "daily", "--no-wait"]
    )
    assert result.exit_code == 0, result.output
    edition_id = int(re.search(r"Edition (\d+)", result.output).group(1))  # type: ignore[union-attr]
    received = live_worker.smtp.wait_for(500, timeout=120)
    assert wait_until_done(worker_app, edition_id) == {"sent": 500}

    message_ids = Counter(m.parsed()["Message-ID"] for m in received)
    assert len(message_ids) == 500 and set(message_ids.values()) == {1}
    assert copies_by_recipient(live_worker.smtp) == Counter({email: 1 for email in expected})
    for message in received:
        parsed = message.parsed()
        text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        found = set(re.findall(r"https://ledger\.example/[a-z]+/story-\d+", text))
        assert found == expected[message.rcpt_tos[0]], message.rcpt_tos[0]
