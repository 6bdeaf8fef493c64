"""The current time, always as an aware UTC datetime, and the site's own time zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from flask import current_app

from newsletter import i18n


def _system_time() -> datetime:
    return datetime.now(UTC)


# Every module reads the time through ``utcnow``, so one call to ``use`` moves it for all of
# them: tests step through days (a daylight-saving change, a reader's hour) without waiting.
_source: Callable[[], datetime] = _system_time


def utcnow() -> datetime:
    return _source()


def use(source: Callable[[], datetime] | None) -> None:
    """Read the time from ``source`` (an aware datetime each call) from now on; None: the
    system's clock again."""
    global _source
    _source = source or _system_time


def site_zone() -> ZoneInfo:
    """The site's TIMEZONE: digests go out by its clock, and readers read dates in it."""
    return zone(str(current_app.config["TIMEZONE"]))


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """An IANA zone by its name (ZoneInfo keeps one object per name; this skips its lock)."""
    return ZoneInfo(name)


def local_date(value: datetime) -> str:
    """A stored (UTC) moment as the day a reader of the site saw it, written in the page's
    or mail's language: "04 December 2026", "4. Dezember 2026"."""
    return i18n.day(value.astimezone(site_zone()).date())


def local_iso_date(value: datetime) -> str:
    """The same day as ``local_date``, as a machine reads it ("2026-12-04", for <time>)."""
    return value.astimezone(site_zone()).date().isoformat()


def local_minute(value: datetime) -> str:
    """A stored (UTC) moment to the minute in the site's zone, for operators: "2026-12-04 18:27"."""
    return value.astimezone(site_zone()).strftime("%Y-%m-%d %H:%M")
