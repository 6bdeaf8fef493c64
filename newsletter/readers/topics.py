"""The site's sections a reader can pick, as stable slugs with display names."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache

from flask import current_app

from newsletter.db.models import Frequency
from newsletter.errors import ConfigError, InvalidReaderField


def slugify(name: str) -> str:
    """A section's stable slug: "Breaking News" -> "breaking-news", "Культура" -> "культура".

    Any name that had a slug before keeps it (its ASCII letters and digits, accents dropped:
    "Économie" -> "economie"), so stored choices stay valid. A name with none of those keeps
    its letters, marks and digits in whatever script, lower-cased; a name with no letter or
    digit at all gets a slug derived from it, never an empty one.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    if slug:
        return slug
    text = unicodedata.normalize("NFKC", name).lower()
    # Marks too (category M): Devanagari or Thai vowel signs are part of the word.
    kept = "".join(ch if unicodedata.category(ch)[0] in "LMN" else " " for ch in text)
    slug = "-".join(kept.split())
    if slug:
        return slug
    return "topic-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]


# The column's size (subscriber_topic.topic, article.topic).
SLUG_LENGTH = 64


def check(names: Sequence[str]) -> None:
    """Refuse a topic list that would lose readers' choices: a name no article can be filed
    under, a slug too long to store, or two names sharing one slug (their readers would mix)."""
    seen: dict[str, str] = {}
    for name in names:
        if not any(ch.isalnum() for ch in name):
            raise ConfigError("NEWSLETTER_TOPICS", f"{name!r} has no letter or digit")
        slug = slugify(name)
        if len(slug) > SLUG_LENGTH:
            raise ConfigError(
                "NEWSLETTER_TOPICS", f"{name!r} is too long (its slug {slug!r} is over 64)"
            )
        if slug in seen and seen[slug] != name:
            raise ConfigError(
                "NEWSLETTER_TOPICS",
                f"{seen[slug]!r} and {name!r} would share the slug {slug!r}; rename one",
            )
        seen[slug] = name


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
