"""Counts of the reader list: by status, topic and frequency, and recent growth and churn."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, literal_column, select

from newsletter.clock import site_zone, utcnow
from newsletter.db.dialect import local_day
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


def readers_by_status() -> dict[str, int]:
    """How many readers are in each status (every status listed, zeros included)."""
    by_status = dict.fromkeys(map(str, Status), 0)
    by_status.update(
        db.session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        ).all()
    )
    return by_status


def count_readers(now: datetime | None = None) -> Stats:
    """Count readers by status, topic and frequency, and the last 30 days' growth and churn.

    Growth and churn come from each reader's latest confirmed_at and unsubscribed_at, so a
    reader who left and came back within the window counts once as growth.
    """
    since = (now or utcnow()) - timedelta(days=WINDOW_DAYS)
    by_status = readers_by_status()
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


# ---- growth and churn by day, for the console's charts


@dataclass(frozen=True, slots=True)
class Day:
    """One day's movement of the list, in the site's time zone."""

    day: date
    joined: int  # readers whose (latest) confirmation fell on this day
    unsubscribed: int  # confirmed readers who unsubscribed on this day
    bounced: int  # addresses suppressed after a bounce
    complained: int  # addresses suppressed after a complaint

    @property
    def left(self) -> int:
        return self.unsubscribed + self.bounced + self.complained


@dataclass(frozen=True)
class Movement:
    """Growth and churn over the last ``len(days)`` days, the newest day last."""

    days: list[Day]
    active_now: int

    @property
    def joined(self) -> int:
        return sum(day.joined for day in self.days)

    @property
    def left(self) -> int:
        return sum(day.left for day in self.days)

    @property
    def net(self) -> int:
        return self.joined - self.left

    @property
    def active_at_start(self) -> int:
        """Active readers before the first day: today's, less the gains, plus the losses."""
        return self.active_now - self.net

    @property
    def churn_rate(self) -> float | None:
        start = self.active_at_start
        return self.left / start if start > 0 else None

    def active_by_day(self) -> list[int]:
        """Active readers at the end of each day, worked back from today's count."""
        counts = []
        active = self.active_now
        for day in reversed(self.days):
            counts.append(active)
            active += day.left - day.joined
        return counts[::-1]


def _as_date(value: Any) -> date:
    # PostgreSQL answers a date, SQLite its ISO text.
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def movement(
    days: int,
    now: datetime | None = None,
    zone: ZoneInfo | None = None,
    active: int | None = None,
) -> Movement:
    """The list's growth and churn on each of the last ``days`` days (today included).

    Counted in SQL, grouped by day (three indexed range scans), whatever the list's size.
    Joining counts each reader's latest confirmation and leaving their latest unsubscribe,
    as ``count_readers`` does; bounces and complaints count the addresses suppressed for
    them (a reader who had already unsubscribed is not suppressed again). ``active`` is
    today's count of active readers, when the caller has it already.
    """
    now = now or utcnow()
    zone = zone or site_zone()
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
    found: dict[date, dict[str, int]] = {}

    def add(rows: Any, kind: str | None = None) -> None:
        for row in rows:
            day = _as_date(row[0])
            found.setdefault(day, {})[kind or row[1]] = int(row[-1])

    # Grouped by position: the day's expression carries the zone as a parameter, and
    # PostgreSQL need not see two copies of a parameter as one expression.
    first_column: ColumnElement[Any] = literal_column("1")
    second_column: ColumnElement[Any] = literal_column("2")
    add(
        db.session.execute(
            select(local_day(Subscriber.confirmed_at, zone, now), func.count())
            .where(Subscriber.confirmed_at >= since)
            .group_by(first_column)
        ),
        "joined",
    )
    add(
        db.session.execute(
            select(local_day(Subscriber.unsubscribed_at, zone, now), func.count())
            .where(Subscriber.unsubscribed_at >= since, Subscriber.confirmed_at.is_not(None))
            .group_by(first_column)
        ),
        "unsubscribed",
    )
    add(
        db.session.execute(
            select(local_day(Suppression.created_at, zone, now), Suppression.reason, func.count())
            .where(
                Suppression.created_at >= since,
                Suppression.reason.in_([Status.BOUNCED, Status.COMPLAINED]),
            )
            .group_by(first_column, second_column)
        )
    )
    series = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        counts = found.get(day, {})
        series.append(
            Day(
                day,
                counts.get("joined", 0),
                counts.get("unsubscribed", 0),
                counts.get(Status.BOUNCED, 0),
                counts.get(Status.COMPLAINED, 0),
            )
        )
    if active is None:
        active = readers_by_status()[Status.ACTIVE]
    return Movement(series, active)
