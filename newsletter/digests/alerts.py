"""Breaking-news alerts: one article, now, to the readers of one topic who want alerts.

An alert is an edition of its own kind with one article and its own ledger, so it goes out
exactly as a digest does (batches, journal, recovery, List-Unsubscribe) and never twice:
an article is alerted to a topic once. Like an unsubscribe, a reader's "no more alerts" or
a topic dropped after planning wins: each chunk is checked again when it is sent (``recheck``).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Select, exists, func, insert, literal, select

from newsletter.clock import utcnow
from newsletter.db.models import (
    Article,
    Delivery,
    DeliveryState,
    Edition,
    EditionArticle,
    EditionKind,
    Frequency,
    Status,
    Subscriber,
    SubscriberTopic,
)
from newsletter.digests.compose import message_id_column
from newsletter.digests.ledger import Claimed, Facts
from newsletter.digests.planning import serialize_planning
from newsletter.errors import NewsletterError
from newsletter.extensions import db
from newsletter.readers import topics


class AlertRefused(NewsletterError):
    """The alert cannot be sent: no such article or topic, or this one was sent already.

    ``field`` names what was wrong ("article_id" or "topic"); ``edition_id`` the earlier alert.
    """

    def __init__(
        self, message: str, edition_id: int | None = None, *, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.edition_id = edition_id
        self.field = field


def recipients(topic: str) -> Select[Any]:
    """Active readers of the topic who have not turned alerts off (as their ids)."""
    return select(Subscriber.id).where(
        Subscriber.status == Status.ACTIVE,
        Subscriber.alerts.is_(True),
        exists().where(
            SubscriberTopic.subscriber_id == Subscriber.id, SubscriberTopic.topic == topic
        ),
    )


ALERTS_OFF = "the reader turned alerts off"


def recheck(facts: Facts, topic: str) -> Facts:
    """An alert's claimed chunk checked again as it is sent: a reader who has turned alerts
    off, or no longer follows the alert's topic, since it was planned is skipped, with the
    reason (one statement a chunk, for alerts only)."""
    wanted = {did: claimed.reader for did, claimed in facts.items() if claimed.reader is not None}
    if not wanted:
        return facts
    ids = sorted({reader.subscriber_id for reader in wanted.values()})
    off = set(
        db.session.scalars(
            select(Subscriber.id).where(Subscriber.id.in_(ids), Subscriber.alerts.is_(False))
        )
    )
    checked = dict(facts)
    for did, reader in wanted.items():
        if reader.subscriber_id in off:
            checked[did] = Claimed(facts[did].attempts, None, ALERTS_OFF)
        elif topic not in reader.topics:
            checked[did] = Claimed(
                facts[did].attempts, None, f"the reader no longer follows {topic}"
            )
    return checked


def audience(topic: str) -> int:
    """How many readers an alert to this topic would reach now."""
    return int(
        db.session.scalar(select(func.count()).select_from(recipients(topic).subquery())) or 0
    )


def _topic(topic: str | None, article: Article) -> str:
    slug = topic or article.topic
    if slug not in topics.available():
        raise AlertRefused(f"{slug!r} is not one of the site's topics", field="topic")
    return slug


def previous(article_id: int, topic: str) -> int | None:
    """The alert edition that already sent this article to this topic, if any."""
    return db.session.scalar(
        select(Edition.id)
        .join(EditionArticle, EditionArticle.edition_id == Edition.id)
        .where(
            Edition.kind == EditionKind.ALERT,
            Edition.topic == topic,
            EditionArticle.article_id == article_id,
        )
        .limit(1)
    )


def plan(article_id: int, topic: str | None = None) -> Edition:
    """Create the alert's edition and ledger (committed); the caller dispatches it."""
    started = time.perf_counter()
    serialize_planning()
    article = db.session.get(Article, article_id)
    if article is None:
        db.session.rollback()
        raise AlertRefused(f"there is no article {article_id}", field="article_id")
    slug = _topic(topic, article)
    earlier = previous(article_id, slug)
    if earlier is not None:
        db.session.rollback()
        raise AlertRefused(
            f"article {article_id} was already alerted to {slug} (edition {earlier})", earlier
        )
    edition = Edition(
        kind=EditionKind.ALERT,
        topic=slug,
        # Not read for alerts; the column may not be empty (see Edition.frequency).
        frequency=Frequency.DAILY,
        covers_until=utcnow(),
        subject=article.title[:300],
    )
    edition.article_rows = [EditionArticle(article_id=article.id, position=0)]
    db.session.add(edition)
    db.session.flush()
    readers = (
        recipients(slug)
        .add_columns(
            literal(DeliveryState.QUEUED.value),
            literal(0),
            message_id_column(edition.id),
            literal(edition.id),
        )
        .order_by(Subscriber.id)
    )
    db.session.execute(
        insert(Delivery).from_select(
            ["subscriber_id", "state", "attempts", "message_id", "edition_id"], readers
        )
    )
    edition.planning_seconds = time.perf_counter() - started
    db.session.commit()
    return edition
