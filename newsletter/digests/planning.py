"""Planning an edition: which articles, which readers, one ledger row per reader."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import (
    Select,
    String,
    and_,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    union_all,
)

from newsletter.clock import site_zone, utcnow
from newsletter.db.dialect import on_postgresql, sqlite_write_lock
from newsletter.db.models import (
    Article,
    Delivery,
    DeliveryState,
    Edition,
    EditionArticle,
    EditionKind,
    EditionState,
    Frequency,
    Status,
    Subscriber,
    SubscriberTopic,
    UTCDateTime,
)
from newsletter.digests import windows
from newsletter.digests.compose import message_id_column
from newsletter.extensions import db

PERIODS = {Frequency.DAILY: timedelta(days=1), Frequency.WEEKLY: timedelta(days=7)}


def unfinished(frequency: str) -> Edition | None:
    """The edition of this frequency still being sent, if any (a second send resumes it)."""
    found: Edition | None = db.session.scalar(
        select(Edition)
        .where(
            Edition.kind == EditionKind.DIGEST,
            Edition.frequency == frequency,
            Edition.state == EditionState.SENDING,
        )
        .order_by(Edition.id.desc())
        .limit(1)
    )
    if found is not None and windows.enabled():
        # Sent in readers' time, an edition waits up to a day for its last windows: one
        # planned on an earlier day of the site must not hold the next one back.
        zone = site_zone()
        if found.covers_until.astimezone(zone).date() < utcnow().astimezone(zone).date():
            return None
    return found


def serialize_planning() -> None:
    """Let one planner at a time decide what the next edition holds."""
    if on_postgresql():
        db.session.execute(text("SELECT pg_advisory_xact_lock(7245011)"))
    else:
        sqlite_write_lock("edition")


def latest(frequency: str) -> Edition | None:
    """The newest digest edition of this frequency, finished or not (alerts are no digest)."""
    return db.session.scalar(
        select(Edition)
        .where(Edition.kind == EditionKind.DIGEST, Edition.frequency == frequency)
        .order_by(Edition.id.desc())
        .limit(1)
    )


def choose_articles(frequency: str, now: datetime) -> list[Article]:
    """New articles since the previous edition of this frequency, newest first, capped."""
    previous = latest(frequency)
    period = PERIODS[Frequency(frequency)]
    since = previous.covers_until if previous else now - period
    already_sent = exists().where(
        EditionArticle.article_id == Article.id,
        EditionArticle.edition_id == Edition.id,
        Edition.kind == EditionKind.DIGEST,
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


def recipients(frequency: str, articles: Sequence[Article]) -> Select[Any]:
    """Who gets an edition of these articles: the active readers of this frequency who
    follow at least one of the articles' topics (as their ids)."""
    wanted = sorted({article.topic for article in articles})
    return select(Subscriber.id).where(
        Subscriber.status == Status.ACTIVE,
        Subscriber.frequency == frequency,
        exists().where(
            SubscriberTopic.subscriber_id == Subscriber.id, SubscriberTopic.topic.in_(wanted)
        ),
    )


def preview(frequency: str, now: datetime) -> tuple[list[Article], int]:
    """The articles the next edition would hold and how many readers it would go to."""
    articles = choose_articles(frequency, now)
    if not articles:
        return [], 0
    readers = db.session.scalar(
        select(func.count()).select_from(recipients(frequency, articles).subquery())
    )
    return articles, int(readers or 0)


def plan(frequency: str, now: datetime | None = None) -> Edition | None:
    """Create the next edition and its ledger, or return None when there is nothing new."""
    if frequency not in list(Frequency):
        raise ValueError(f"frequency must be one of {', '.join(Frequency)}")
    started = time.perf_counter()
    now = now or utcnow()
    serialize_planning()
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
    readers = recipients(frequency, articles).add_columns(
        literal(DeliveryState.QUEUED.value),
        literal(0),
        message_id_column(edition.id),
        literal(edition.id),
    )
    columns = ["subscriber_id", "state", "attempts", "message_id", "edition_id"]
    if windows.enabled():
        readers = _in_reader_time(readers, frequency, now)
        columns.append("not_before")
    else:
        readers = readers.order_by(Subscriber.id)
    # One INSERT ... SELECT: the ledger of a million readers never passes through Python.
    db.session.execute(insert(Delivery).from_select(columns, readers))
    if windows.enabled():
        windows.record(edition.id)
    edition.planning_seconds = time.perf_counter() - started
    db.session.commit()
    return edition


def _in_reader_time(readers: Select[Any], frequency: str, now: datetime) -> Select[Any]:
    """``readers`` with the moment each may be sent (their window's opening), numbered in
    the order of those moments so that each window is one id range.

    The openings are worked out per zone (a few dozen), not per reader: the readers are
    joined to a small table of (zone, opening) in the same statement.
    """
    names = db.session.scalars(
        select(Subscriber.timezone)
        .where(Subscriber.status == Status.ACTIVE, Subscriber.frequency == frequency)
        .distinct()
    )
    found = windows.openings(names, now)
    site = literal(found.site, UTCDateTime)
    if not found.by_zone:
        return readers.add_columns(site).order_by(Subscriber.id)
    rows = [
        select(literal(name, String(64)).label("zone"), literal(at, UTCDateTime).label("opens"))
        for name, at in sorted(found.by_zone.items())
    ]
    slots = (union_all(*rows) if len(rows) > 1 else rows[0]).cte("slot")
    # Readers without a zone, or with one the database no longer knows, go at the site's.
    opens = func.coalesce(slots.c.opens, site)
    return (
        readers.outerjoin(slots, slots.c.zone == Subscriber.timezone)
        .add_columns(opens)
        .order_by(opens, Subscriber.id)
    )


def edition(edition_id: int | None = None) -> Edition | None:
    """An edition by id, or the newest when ``edition_id`` is None."""
    if edition_id is None:
        return db.session.scalar(select(Edition).order_by(Edition.id.desc()).limit(1))
    return db.session.get(Edition, edition_id)


def recent(limit: int = 100, before_id: int | None = None) -> list[Edition]:
    """The newest editions first (digests and alerts), older than ``before_id`` when given."""
    query = select(Edition).order_by(Edition.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Edition.id < before_id)
    return list(db.session.scalars(query))
