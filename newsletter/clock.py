"""The current time, always as an aware UTC datetime, and the site's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from flask import current_app

from newsletter import i18n


def utcnow() -> datetime:
    return datetime.now(UTC)


def site_zone() -> ZoneInfo:
    """The site's TIMEZONE: digests go out by its clock, and readers read dates in it."""
    return _zone(str(current_app.config["TIMEZONE"]))


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(value: datetime) -> str:
    """A stored (UTC) moment as the day a reader of the site saw it, written in the page's
    or mail's language: "04 December 2026", "4. Dezember 2026"."""
    return i18n.day(value.astimezone(site_zone()).date())


def local_iso_date(value: datetime) -> str:
    """The same day as ``local_date``, as a machine reads it ("2026-12-04", for <time>)."""
    return value.astimezone(site_zone()).date().isoformat()
