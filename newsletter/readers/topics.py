"""The site's sections a reader can pick, as stable slugs with display names."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache

from flask import current_app

from newsletter.db.models import Frequency
from newsletter.errors import InvalidReaderField


def slugify(name: str) -> str:
    """Turn a section name such as "Breaking News" into "breaking-news"."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


def available() -> dict[str, str]:
    """Map each configured topic's slug to its display name, in configured order."""
    return dict(_by_slug(tuple(current_app.config["TOPICS"])))


@lru_cache(maxsize=8)
def _by_slug(names: tuple[str, ...]) -> dict[str, str]:
    # Every signup form and request asks, and the setting hardly ever changes.
    return {slugify(name): name for name in names}


def known(chosen: list[str]) -> list[str]:
    """The known slugs among ``chosen``, in configured order."""
    wanted = set(chosen)
    return [slug for slug in available() if slug in wanted]


def clean(chosen: list[str]) -> list[str]:
    """Keep the known slugs in configured order; an empty choice means every topic."""
    return known(chosen) or list(available())


def resolve_topics(value: str, configured: Mapping[str, str] | None = None) -> list[str]:
    """Topic slugs from "a,b" or "a;b" (slugs or display names); empty means every topic.

    ``configured`` (what ``available()`` returns) saves recomputing it for many rows.
    """
    names = available() if configured is None else configured
    chosen: set[str] = set()
    for part in re.split(r"[,;]", value):
        if not part.strip():
            continue
        slug = slugify(part)
        if slug not in names:
            raise InvalidReaderField(
                "topics", f"unknown topic {part.strip()!r} (known: {', '.join(names)})"
            )
        chosen.add(slug)
    # In configured order, as the signup form stores them.
    return [slug for slug in names if slug in chosen] or list(names)


def resolve_frequency(value: str) -> str:
    """A frequency from any case; empty means weekly, the signup form's default."""
    frequency = value.strip().lower() or Frequency.WEEKLY
    if frequency not in list(Frequency):
        raise InvalidReaderField(
            "frequency", f"unknown frequency {value.strip()!r} (use daily or weekly)"
        )
    return frequency
