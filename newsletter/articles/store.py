"""Storing articles: unseen guids inserted in bulk, and the periodic fetch of every feed."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum

from flask import current_app
from sqlalchemy import Insert, func, select

from newsletter.articles.cleaning import ArticleRecord
from newsletter.articles.feeds import (
    Validators,
    feed_timeout,
    fetch_feed,
    is_url,
    read_entries,
)
from newsletter.clock import utcnow
from newsletter.db.dialect import upsert
from newsletter.db.models import Article, FeedState
from newsletter.errors import FeedDeferred, FeedError
from newsletter.extensions import db
from newsletter.readers.topics import available

log = logging.getLogger(__name__)

INSERT_CHUNK = 500
FEED_KEY_LENGTH = 2000  # feed_state.feed


class FeedStatus(StrEnum):
    UPDATED = "updated"  # fetched and read
    UNCHANGED = "unchanged"  # the server said it has not changed since our last fetch
    DEFERRED = "deferred"  # its server asked us to wait; not asked again yet


@dataclass
class FeedReport:
    """What one feed fetch did: counts, and the entries it had to leave out."""

    feed: str
    added: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    status: FeedStatus = FeedStatus.UPDATED
    retry_after: datetime | None = None


def _chunks(records: Iterable[ArticleRecord], size: int) -> Iterator[list[ArticleRecord]]:
    """Yield lists of at most ``size`` records."""
    chunk: list[ArticleRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _insert_ignoring_duplicates() -> Insert:
    """An INSERT that skips guids a concurrent fetch stored first."""
    return upsert(Article).on_conflict_do_nothing(index_elements=["guid"])


def upsert_articles(records: Iterable[ArticleRecord]) -> tuple[int, int]:
    """Insert the records whose guid is not stored yet; returns (added, skipped).

    One query per chunk finds the known guids, one bulk INSERT adds the rest. The caller
    commits, so an import can be all-or-nothing.
    """
    added = skipped = 0
    seen: set[str] = set()
    for chunk in _chunks(records, INSERT_CHUNK):
        unique = []
        for record in chunk:
            if record.guid in seen:
                skipped += 1
            else:
                seen.add(record.guid)
                unique.append(record)
        if not unique:
            continue
        guids = [record.guid for record in unique]
        known = set(db.session.scalars(select(Article.guid).where(Article.guid.in_(guids))))
        fresh = [asdict(record) for record in unique if record.guid not in known]
        skipped += len(unique) - len(fresh)
        if fresh:
            inserted = db.session.scalars(
                _insert_ignoring_duplicates().returning(Article.id), fresh
            ).all()
            added += len(inserted)
            skipped += len(fresh) - len(inserted)
    return added, skipped


def ids_by_guid(guids: Iterable[str]) -> dict[str, int]:
    """The stored articles' ids for these guids (those not stored are left out)."""
    wanted = list(guids)
    found: dict[str, int] = {}
    for start in range(0, len(wanted), INSERT_CHUNK):
        rows = db.session.execute(
            select(Article.guid, Article.id).where(
                Article.guid.in_(wanted[start : start + INSERT_CHUNK])
            )
        )
        found.update({guid: article_id for guid, article_id in rows})
    return found


def default_category() -> str:
    """The section an untagged feed entry is filed under: the first configured topic."""
    return str(current_app.config["TOPICS"][0])


def fetch_and_store(url_or_path: str, *, timeout: float | None = None) -> FeedReport:
    """Fetch one feed and store its unseen articles, committing; raises FeedError if unusable.

    Politely: the request asks whether the feed changed since the last answer (its ETag and
    Last-Modified), and a feed whose server asked us to wait is not asked before then.
    """
    now = utcnow()
    polite = is_url(url_or_path)  # a file has no server to be polite to
    key = url_or_path[:FEED_KEY_LENGTH]
    state = db.session.scalar(select(FeedState).where(FeedState.feed == key)) if polite else None
    since = Validators(state.etag, state.last_modified) if state is not None else None
    waiting = state.retry_after if state is not None else None
    db.session.rollback()  # read only: no transaction stays open through the download
    if waiting is not None and waiting > now:
        return FeedReport(url_or_path, status=FeedStatus.DEFERRED, retry_after=waiting)
    try:
        fetched = fetch_feed(url_or_path, feed_timeout() if timeout is None else timeout, since)
    except FeedDeferred as exc:
        _remember(key, since or Validators(), now, retry_after=exc.until)
        return FeedReport(
            url_or_path, problems=[str(exc)], status=FeedStatus.DEFERRED, retry_after=exc.until
        )
    if fetched.parsed is None:
        _remember(key, fetched.validators, now)
        return FeedReport(url_or_path, status=FeedStatus.UNCHANGED)
    records, problems = read_entries(
        fetched.parsed, url_or_path, default_category=default_category()
    )
    try:
        added, skipped = upsert_articles(records)
        if polite:
            _remember(key, fetched.validators, now)
        else:
            db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return FeedReport(feed=url_or_path, added=added, skipped=skipped, problems=problems)


def _remember(
    feed: str, validators: Validators, now: datetime, retry_after: datetime | None = None
) -> None:
    """Keep what the feed's server last said, for the next fetch; commits."""
    table = FeedState.__table__
    values = {
        "etag": validators.etag,
        "last_modified": validators.last_modified,
        "retry_after": retry_after,
        "checked_at": now,
    }
    db.session.execute(
        upsert(table)
        .values(feed=feed, **values)
        .on_conflict_do_update(index_elements=["feed"], set_=values)
    )
    db.session.commit()


def recent_articles(limit: int = 20, topic: str | None = None) -> list[Article]:
    """The newest articles first, optionally only one topic's."""
    query = select(Article).order_by(Article.published_at.desc(), Article.id.desc()).limit(limit)
    if topic:
        query = query.where(Article.topic == topic)
    return list(db.session.scalars(query))


def article(article_id: int) -> Article | None:
    """One stored article by its id."""
    return db.session.get(Article, article_id)


def stray_categories() -> dict[str, int]:
    """Stored articles per category that is no configured topic: no reader can pick them."""
    rows = db.session.execute(
        select(Article.category, func.count())
        .where(Article.topic.not_in(list(available())))
        .group_by(Article.category)
        .order_by(Article.category)
    )
    return {category: count for category, count in rows}


def fetch_configured() -> dict[str, int]:
    """Fetch every feed of NEWSLETTER_FEEDS; one bad feed is logged and never stops the others."""
    totals = {"feeds": 0, "failed": 0, "unchanged": 0, "deferred": 0, "added": 0, "skipped": 0}
    timeout = feed_timeout()
    for feed in current_app.config["FEEDS"]:
        totals["feeds"] += 1
        try:
            report = fetch_and_store(feed, timeout=timeout)
        except FeedError as exc:
            totals["failed"] += 1
            log.warning("feed failed: %s", exc)
            continue
        except Exception:
            # A database hiccup or a parser bug on one feed must not cost the other feeds.
            totals["failed"] += 1
            db.session.rollback()
            log.exception("feed %s failed unexpectedly", feed)
            continue
        if report.status is not FeedStatus.UPDATED:
            totals[report.status.value] += 1
            log.info("%s: %s", feed, report.status.value)
            continue
        totals["added"] += report.added
        totals["skipped"] += report.skipped
        for problem in report.problems:
            log.warning("entry skipped: %s", problem)
        log.info("%s: %d new, %d already known", feed, report.added, report.skipped)
    return totals
