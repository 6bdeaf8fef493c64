"""An edition's articles as plain data, grouped into sections for the templates."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nh3
from markupsafe import Markup
from sqlalchemy import select

from newsletter.db.models import Edition, EditionArticle
from newsletter.extensions import db
from newsletter.mail.message import SLOT_CLOSE, SLOT_OPEN, single_line
from newsletter.readers import topics

TITLE_LIMIT = 300


SUMMARY_LIMIT = 600


@dataclass(frozen=True, slots=True)
class ArticleView:
    """What a digest shows of one article; text is plain, ``summary_html`` is sanitized."""

    title: str
    url: str
    category: str
    topic: str
    source: str
    published_at: datetime
    summary_text: str
    summary_html: Markup


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    articles: tuple[ArticleView, ...]


@dataclass(frozen=True, slots=True)
class EditionContent:
    """An edition as plain data, loaded once per process (editions never change)."""

    id: int
    frequency: str
    created_at: datetime
    articles: tuple[ArticleView, ...]

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(article.topic for article in self.articles)

    def sections(self, wanted: Iterable[str] | None = None) -> list[Section]:
        """Articles grouped by section in the site's topic order, newest first in each."""
        keep = set(wanted) if wanted is not None else set(self.topics)
        order = {slug: index for index, slug in enumerate(topics.available())}
        groups: dict[str, list[ArticleView]] = {}
        for article in self.articles:
            if article.topic in keep:
                groups.setdefault(article.topic, []).append(article)
        ranked = sorted(groups.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
        return [Section(name=items[0].category, articles=tuple(items)) for _, items in ranked]


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _text(value: str | None) -> str:
    """Article text as the templates may show it: never holding the composer's slot markers,
    which would open a slot of the article's choosing in every reader's mail."""
    return (value or "").replace(SLOT_OPEN, "").replace(SLOT_CLOSE, "")


def article_view(article: Any) -> ArticleView:
    # Sanitized on the way in already; cleaned again here because only this line marks it safe.
    summary = _text(article.summary)
    clean_html = nh3.clean(summary)
    text = single_line(html.unescape(nh3.clean(summary, tags=set())))
    return ArticleView(
        title=_shorten(single_line(_text(article.title)), TITLE_LIMIT),
        url=_text(article.url),
        category=single_line(_text(article.category)),
        topic=article.topic,
        source=single_line(_text(article.source)),
        published_at=article.published_at,
        summary_text=_shorten(text, SUMMARY_LIMIT),
        summary_html=Markup(clean_html)
        if len(clean_html) <= 2 * SUMMARY_LIMIT
        else Markup("<p>{}</p>").format(_shorten(text, SUMMARY_LIMIT)),
    )


def load_content(edition_id: int) -> EditionContent:
    edition = db.session.get(Edition, edition_id)
    if edition is None:
        raise LookupError(f"no edition {edition_id}")
    rows = db.session.scalars(
        select(EditionArticle)
        .where(EditionArticle.edition_id == edition_id)
        .order_by(EditionArticle.position)
    )
    return EditionContent(
        id=edition.id,
        frequency=edition.frequency,
        created_at=edition.created_at,
        articles=tuple(article_view(row.article) for row in rows),
    )
