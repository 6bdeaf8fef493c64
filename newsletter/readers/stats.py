"""Counts of the reader list: by status, topic and frequency, and recent growth and churn."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from newsletter.clock import utcnow
from newsletter.db.models import Frequency, Status, Subscriber, SubscriberTopic, Suppression
from newsletter.extensions import db
from newsletter.readers import topics
from newsletter.readers.suppression import ERASED


@dataclass
class Stats:
    """Counts of the reader list and its movement over a recent window."""

    by_status: dict[str, int]
    by_topic: dict[str, int]  # active readers per topic slug
    by_frequency: dict[str, int]  # active readers per frequency
    since: datetime
    confirmed: int  # growth: readers whose (latest) confirmation falls in the window
    unsubscribed: int  # churn: confirmed readers who unsubscribed in the window
    topic_names: dict[str, str] = field(default_factory=dict)
    # Addresses never to be mailed again, by reason: a reader who had unsubscribed before
    # their mail bounced keeps the status unsubscribed, and is counted here.
    suppressed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def net(self) -> int:
        return self.confirmed - self.unsubscribed

    @property
    def active_at_start(self) -> int:
        """Active readers when the window opened: today's, less its gains, plus its losses."""
        return self.by_status[Status.ACTIVE] - self.confirmed + self.unsubscribed

    @property
    def churn_rate(self) -> float | None:
        start = self.active_at_start
        return self.unsubscribed / start if start > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_status": self.by_status,
            "active_by_topic": self.by_topic,
            "active_by_frequency": self.by_frequency,
            "suppressed": self.suppressed,
            "window": {
                "since": self.since.isoformat(),
                "days": WINDOW_DAYS,
                "confirmed": self.confirmed,
                "unsubscribed": self.unsubscribed,
                "net": self.net,
                "active_at_start": self.active_at_start,
                "churn_rate": self.churn_rate,
            },
        }


WINDOW_DAYS = 30


def count_readers(now: datetime | None = None) -> Stats:
    """Count readers by status, topic and frequency, and the last 30 days' growth and churn.

    Growth and churn come from each reader's latest confirmed_at and unsubscribed_at, so a
    reader who left and came back within the window counts once as growth.
    """
    since = (now or utcnow()) - timedelta(days=WINDOW_DAYS)
    by_status = dict.fromkeys(map(str, Status), 0)
    by_status.update(
        db.session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        ).all()
    )
    active = Subscriber.status == Status.ACTIVE
    names = topics.available()
    by_topic = dict.fromkeys(names, 0)
    by_topic.update(
        db.session.execute(
            select(SubscriberTopic.topic, func.count())
            .join(Subscriber, Subscriber.id == SubscriberTopic.subscriber_id)
            .where(active)
            .group_by(SubscriberTopic.topic)
        ).all()
    )
    by_frequency = dict.fromkeys(map(str, Frequency), 0)
    by_frequency.update(
        db.session.execute(
            select(Subscriber.frequency, func.count()).where(active).group_by(Subscriber.frequency)
        ).all()
    )
    confirmed = db.session.scalar(select(func.count()).where(Subscriber.confirmed_at >= since)) or 0
    # An unsubscribe from a never-confirmed (pending) reader is not the loss of a reader.
    unsubscribed = (
        db.session.scalar(
            select(func.count()).where(
                Subscriber.unsubscribed_at >= since, Subscriber.confirmed_at.is_not(None)
            )
        )
        or 0
    )
    suppressed = dict.fromkeys(map(str, (Status.BOUNCED, Status.COMPLAINED, ERASED)), 0)
    suppressed.update(
        db.session.execute(
            select(Suppression.reason, func.count()).group_by(Suppression.reason)
        ).all()
    )
    return Stats(
        by_status, by_topic, by_frequency, since, confirmed, unsubscribed, names, suppressed
    )
