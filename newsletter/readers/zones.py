"""Readers' time zones: which IANA names are accepted, and the list a reader picks from."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib import resources
from zoneinfo import available_timezones

from newsletter.clock import zone

# Not places: the database's placeholder and the machine's own setting.
_NOT_ZONES = frozenset({"Factory", "localtime", "posixrules"})


@cache
def known() -> frozenset[str]:
    """Every IANA zone name, old ones kept as links included (some browsers still report
    ``Asia/Calcutta`` or ``Europe/Kiev``)."""
    return frozenset(available_timezones() - _NOT_ZONES)


def clean(value: object) -> str | None:
    """``value`` when it names an IANA time zone, else None (the site's TIMEZONE applies)."""
    if isinstance(value, str) and value in known():
        return value
    return None


@cache
def _listed() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The zones of the database's own list of places (``zone.tab``), by region, A to Z."""
    table = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text("utf-8")
    regions: dict[str, list[str]] = {}
    for line in table.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("\t")[2]
        if name in known():
            regions.setdefault(name.split("/", 1)[0], []).append(name)
    return tuple(
        (region, tuple(sorted(names, key=lambda name: name.rsplit("/", 1)[-1])))
        for region, names in sorted(regions.items())
    )


def label(name: str, now: datetime) -> str:
    """A zone as a reader looks for it: its place and today's offset, "Buenos Aires
    (Argentina), UTC-03:00"."""
    offset = now.astimezone(zone(name)).strftime("%z")
    shown = f"UTC{offset[:3]}:{offset[3:]}" if offset not in ("+0000", "") else "UTC"
    parts = name.replace("_", " ").split("/")
    place = parts[-1] if len(parts) < 3 else f"{parts[-1]} ({parts[1]})"
    return place if name == "UTC" else f"{place}, {shown}"


def grouped(now: datetime, current: str | None = None) -> list[tuple[str, list[tuple[str, str]]]]:
    """(region, [(zone, label)]) for a select with one group per region; ``current`` (a
    reader's zone the list lacks, such as an old name a browser gave) comes first."""
    groups = [("", [("UTC", "UTC")])]
    if current and current != "UTC" and all(current not in names for _, names in _listed()):
        groups.insert(0, ("", [(current, label(current, now))]))
    groups += [
        (region, [(name, label(name, now)) for name in names]) for region, names in _listed()
    ]
    return groups
