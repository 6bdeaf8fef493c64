"""Planning an edition: which articles, which readers, one ledger row per reader."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, exists, func, insert, literal, or_, select, text

from newsletter.clock import utcnow
from newsletter.db.models import (
    Article,
    Delivery,
    Edition,
    EditionArticle,
    Frequency,
    Subscriber,
    SubscriberTopic,
)
from newsletter.digests.compose import message_id_column
from newsletter.extensions import db

PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}


def unfinished(frequency: str) -> Edition | None:
    """The edition of this frequency still being sent, if any (a second send resumes it)."""
    return db.session.scalar(
        select(Edition)
        .where(Edition.frequency == frequency, Edition.state == "sending")
        .order_by(Edition.id.desc())
        .limit(1)
    )


def _serialize_planning() -> None:
    """Let one planner at a time decide what the next edition holds."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(7245011)"))
    else:
        # SQLite takes its write lock at the first write of a transaction.
        db.session.execute(text("UPDATE edition SET state = state WHERE 0 = 1"))


def choose_articles(frequency: str, now: datetime) -> list[Article]:
    """New articles since the previous edition of this frequency, newest first, capped."""
    previous = db.session.scalar(
        select(Edition).where(Edition.frequency == frequency).order_by(Edition.id.desc()).limit(1)
    )
    period = PERIODS[frequency]
    since = previous.covers_until if previous else now - period
    already_sent = exists().where(
        EditionArticle.article_id == Article.id,
        EditionArticle.edition_id == Edition.id,
        Edition.frequency == frequency,
    )
    # An article fetched late (published before the last edition, added after it) is
    # still new to readers; a backfill of old articles is not.
    query = (
        select(Article)
        .where(
            Article.published_at <= now,
            or_(
                Article.published_at > since,
                and_(Article.added_at > since, Article.published_at > since - period),
            ),
            ~already_sent,
        )
        .order_by(Article.published_at.desc(), Article.id.desc())
        .limit(int(current_app.config["DIGEST_MAX_ARTICLES"]))
    )
    return list(db.session.scalars(query))


def plan(frequency: str, now: datetime | None = None) -> Edition | None:
    """Create the next edition and its ledger, or return None when there is nothing new."""
    if frequency not in list(Frequency):
        raise ValueError(f"frequency must be one of {', '.join(Frequency)}")
    started = time.perf_counter()
    now = now or utcnow()
    _serialize_planning()
    articles = choose_articles(frequency, now)
    if not articles:
        db.session.rollback()
        return None
    edition = Edition(frequency=frequency, covers_until=now, subject=articles[0].title[:300])
    edition.article_rows = [
        EditionArticle(article_id=article.id, position=index)
        for index, article in enumerate(articles)
    ]
    db.session.add(edition)
    db.session.flush()
    wanted = sorted({article.topic for article in articles})
    readers = (
        select(
            literal(edition.id),
            Subscriber.id,
            literal("queued"),
            literal(0),
            message_id_column(edition.id),
        )
        .where(
            Subscriber.status == "active",
            Subscriber.frequency == frequency,
            exists().where(
                SubscriberTopic.subscriber_id == Subscriber.id, SubscriberTopic.topic.in_(wanted)
            ),
        )
        .order_by(Subscriber.id)
    )
    # One INSERT ... SELECT: the ledger of a million readers never passes through Python.
    db.session.execute(
        insert(Delivery).from_select(
            ["edition_id", "subscriber_id", "state", "attempts", "message_id"], readers
        )
    )
    edition.planning_seconds = time.perf_counter() - started
    db.session.commit()
    return edition


def counts(edition_id: int) -> dict[str, int]:
    """Deliveries of an edition by state."""
    rows = db.session.execute(
        select(Delivery.state, func.count())
        .where(Delivery.edition_id == edition_id)
        .group_by(Delivery.state)
    )
    return {state: int(number) for state, number in rows}
