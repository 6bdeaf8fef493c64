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

from newsletter.db.models import Edition, EditionArticle, EditionKind
from newsletter.extensions import db
from newsletter.mail import text as text_part
from newsletter.mail.message import SLOT_CLOSE, SLOT_OPEN, single_line
from newsletter.readers import topics

TITLE_LIMIT = 300


SUMMARY_LIMIT = 600


# The column of a mail is 600 px less its padding; a wider image is shown at this width.
IMAGE_MAX_WIDTH = 552


@dataclass(frozen=True, slots=True)
class ImageView:
    """An article's picture as a mail shows it: the size to reserve, and what to say instead."""

    url: str
    alt: str
    width: int
    height: int | None


@dataclass(frozen=True, slots=True)
class ArticleView:
    """What a digest shows of one article; text is plain, ``summary_html`` is sanitized.

    ``summary_text`` is the summary laid out for the text part, in lines of its own.
    """

    title: str
    url: str
    category: str
    topic: str
    source: str
    published_at: datetime
    summary_text: str
    summary_html: Markup
    author: str = ""
    image: ImageView | None = None


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
    kind: str = EditionKind.DIGEST
    topic: str | None = None  # an alert's topic

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


def image_view(article: Any, title: str) -> ImageView | None:
    """The article's image scaled to fit the column, or None when it has none (or not https,
    as rows stored before that was checked might)."""
    url = _text(article.image_url)
    if not url.lower().startswith("https://"):
        return None
    width, height = article.image_width, article.image_height
    if width and width > IMAGE_MAX_WIDTH:
        height = round(height * IMAGE_MAX_WIDTH / width) if height else None
        width = IMAGE_MAX_WIDTH
    # Without its size, an image is given the column's width so no client shows it wider;
    # its height then follows from the picture.
    return ImageView(
        url=url,
        # Said in its place when images are off; the headline when the feed gave no words.
        alt=single_line(_text(article.image_alt)) or title,
        width=width or IMAGE_MAX_WIDTH,
        height=height if width else None,
    )


def article_view(article: Any) -> ArticleView:
    # Sanitized on the way in already; cleaned again here because only this line marks it safe.
    summary = _text(article.summary)
    clean_html = nh3.clean(summary)
    text = single_line(html.unescape(nh3.clean(summary, tags=set())))
    whole = len(clean_html) <= 2 * SUMMARY_LIMIT
    title = _shorten(single_line(_text(article.title)), TITLE_LIMIT)
    return ArticleView(
        title=title,
        url=_text(article.url),
        category=single_line(_text(article.category)),
        topic=article.topic,
        source=single_line(_text(article.source)),
        published_at=article.published_at,
        summary_text=text_part.readable(clean_html)
        if whole
        else text_part.readable(html.escape(_shorten(text, SUMMARY_LIMIT))),
        summary_html=Markup(clean_html)
        if whole
        else Markup("<p>{}</p>").format(_shorten(text, SUMMARY_LIMIT)),
        author=single_line(_text(article.author)),
        image=image_view(article, title),
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
        kind=edition.kind,
        topic=edition.topic,
    )
