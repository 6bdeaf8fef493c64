"""Send windows: with SEND_IN_READER_TIME, each reader's digest waits for DIGEST_HOUR in the
reader's own time zone.

An edition is still planned once, at beat's hour in the site's TIMEZONE. Each ledger row
gets, in ``not_before``, the moment its reader's window opens; planning numbers the rows in
the order of those moments, so each window is one id range, kept in ``send_window``. Beat
releases a window when its moment comes (``release_due``): its batches are queued, and only
then can they claim its rows (a claim takes only rows whose ``not_before`` has passed).

Which day: the edition planned on the site's day D goes to a reader at DIGEST_HOUR on their
own day D, or on D + 1 for a zone that is ahead of the site's at some time of the year
(Berlin for a site on UTC, London for one on UTC: ahead in summer). The choice holds all
year, so a daylight-saving change on either side never gives a reader two digests on one
day or none: one edition, one day. An hour the clocks skip opens at the first moment after
the gap (2:00 in New York on the spring-forward day is 3:00 EDT); an hour they repeat, at
its first occurrence. Never before the edition was planned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, insert, select, update

from newsletter.clock import zone
from newsletter.db.models import Delivery, SendWindow
from newsletter.extensions import db
from newsletter.readers import zones

# Around the planning day, the days on which a zone's hour is compared with the site's: a
# year, so that every season of both zones is seen.
_YEAR = range(-183, 183)


def enabled() -> bool:
    """Whether digests wait for each reader's own DIGEST_HOUR (SEND_IN_READER_TIME)."""
    return bool(current_app.config["SEND_IN_READER_TIME"])


def local_hour(where: ZoneInfo, day: date, hour: int) -> datetime:
    """The moment ``hour`` begins on ``day`` in ``where``, in UTC: after the gap if the clocks
    skip that hour, its first occurrence if they repeat it."""
    # fold=0 reads a skipped time with the offset from before the change, which lands at
    # the first moment after the gap (2:00 EST is 3:00 EDT); a repeated one as its first.
    return datetime.combine(day, time(hour), tzinfo=where).astimezone(UTC)


@lru_cache(maxsize=4096)
def _ahead(name: str, site: str, hour: int, around: date) -> bool:
    """Whether ``name`` reaches ``hour`` before the site does on some day of the year
    around ``around``."""
    theirs, ours = zone(name), zone(site)
    days = [around + timedelta(days=offset) for offset in _YEAR]
    return any(local_hour(theirs, day, hour) < local_hour(ours, day, hour) for day in days)


def opening(name: str, site: str, hour: int, planned: datetime) -> datetime:
    """When an edition planned at ``planned`` may go to a reader in zone ``name``."""
    day = planned.astimezone(zone(site)).date()
    if _ahead(name, site, hour, day):
        day += timedelta(days=1)
    return max(planned, local_hour(zone(name), day, hour))


def day_later(name: str, now: datetime) -> bool:
    """Whether a reader in zone ``name`` gets each edition on the day after the site's day
    of planning (their zone is ahead of the site's some time of the year)."""
    site = str(current_app.config["TIMEZONE"])
    hour = int(current_app.config["DIGEST_HOUR"])
    return _ahead(name, site, hour, now.astimezone(zone(site)).date())


class Openings(NamedTuple):
    """When each of the readers' zones may get an edition, and the site's own moment (for
    readers without a zone, or with one the database no longer knows)."""

    by_zone: dict[str, datetime]
    site: datetime


def openings(names: Iterable[str | None], planned: datetime) -> Openings:
    """The opening of each valid zone among ``names`` for an edition planned at ``planned``."""
    site = str(current_app.config["TIMEZONE"])
    hour = int(current_app.config["DIGEST_HOUR"])
    valid = {clean for name in names if (clean := zones.clean(name)) is not None}
    found = {name: opening(name, site, hour, planned) for name in valid}
    return Openings(found, opening(site, site, hour, planned))


def record(edition_id: int) -> int:
    """Write down the windows of a freshly planned ledger (in the caller's transaction)."""
    table = Delivery.__table__
    ranges = (
        select(
            table.c.edition_id,
            table.c.not_before,
            func.min(table.c.id),
            func.max(table.c.id),
            func.count(),
        )
        .where(table.c.edition_id == edition_id)
        .group_by(table.c.edition_id, table.c.not_before)
    )
    result: Any = db.session.execute(
        insert(SendWindow).from_select(
            ["edition_id", "opens_at", "first_id", "last_id", "readers"], ranges
        )
    )
    return int(result.rowcount or 0)


def release_due(now: datetime, edition_id: int | None = None) -> list[tuple[int, int, int]]:
    """Mark the windows whose moment has come as released (uncommitted): (edition, first id,
    last id) of each, for the caller to queue. A window is released once."""
    table = SendWindow.__table__
    statement = update(table).where(table.c.released_at.is_(None), table.c.opens_at <= now)
    if edition_id is not None:
        statement = statement.where(table.c.edition_id == edition_id)
    rows = db.session.execute(
        statement.values(released_at=now).returning(
            table.c.edition_id, table.c.first_id, table.c.last_id
        )
    ).all()
    return sorted((int(e), int(first), int(last)) for e, first, last in rows)


@dataclass(frozen=True, slots=True)
class Opened:
    """An edition's windows as of a moment: every row due to go out has an id up to
    ``through`` (planning numbered them by their windows), and a row whose ``not_before``
    is still its window's opening has not been tried."""

    through: int
    openings: tuple[datetime, ...]


def opened(edition_id: int, now: datetime) -> Opened | None:
    """The edition's windows open at ``now``; None for an edition planned without windows."""
    rows = db.session.execute(
        select(SendWindow.opens_at, SendWindow.last_id).where(SendWindow.edition_id == edition_id)
    ).all()
    if not rows:
        return None
    through = max((last for opens_at, last in rows if opens_at <= now), default=0)
    return Opened(int(through), tuple(opens_at for opens_at, _ in rows))


class Waiting(NamedTuple):
    """Rows of an edition that wait for their readers' hour, and when the next window opens."""

    rows: int
    windows: int
    next_opening: datetime | None


def waiting(edition_id: int, now: datetime) -> Waiting:
    """How many of the edition's rows wait for a window that has not opened yet."""
    rows, count, first = db.session.execute(
        select(
            func.coalesce(func.sum(SendWindow.readers), 0),
            func.count(),
            func.min(SendWindow.opens_at),
        ).where(
            SendWindow.edition_id == edition_id,
            SendWindow.released_at.is_(None),
            SendWindow.opens_at > now,
        )
    ).one()
    return Waiting(int(rows), int(count), first)
