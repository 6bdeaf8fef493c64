"""Composing a digest: the edition's articles, one rendering per distinct content."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nh3
from markupsafe import Markup
from sqlalchemy import ColumnElement, literal, select

from . import topics, verp
from .extensions import db
from .mail import render
from .mail.message import (
    MessageTemplate,
    OutgoingMessage,
    date_header,
    mail_domain,
    single_line,
    slot,
)
from .models import Edition, EditionArticle, Subscriber
from .tokens import Purpose, encoded_payload, minter
from .web.links import external_url

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


def article_view(article: Any) -> ArticleView:
    # Sanitized on the way in already; cleaned again here because only this line marks it safe.
    clean_html = nh3.clean(article.summary or "")
    text = single_line(html.unescape(nh3.clean(article.summary or "", tags=set())))
    return ArticleView(
        title=_shorten(single_line(article.title), TITLE_LIMIT),
        url=article.url,
        category=single_line(article.category),
        topic=article.topic,
        source=single_line(article.source or ""),
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


def message_id(edition_id: int | str, uid: str) -> str:
    """Deterministic per edition and reader, so a resend would be recognizable as one."""
    return f"<digest.{edition_id}.{uid}@{mail_domain()}>"


def message_id_column(edition_id: int) -> ColumnElement[str]:
    """``message_id`` as SQL, so planning writes it with the ledger rows in one statement."""
    return literal(f"<digest.{edition_id}.") + Subscriber.uid + literal(f"@{mail_domain()}>")


@dataclass(frozen=True, slots=True)
class Reader:
    """The per-reader facts a digest needs, as read from the database."""

    subscriber_id: int
    uid: str
    email: str
    name: str
    topics: frozenset[str]
    message_id: str
    delivery_id: int | None = None  # the ledger row, named by the VERP return path


class Composer:
    """Builds each reader's digest from one MessageTemplate per distinct set of topics."""

    def __init__(self, content: EditionContent) -> None:
        self.content = content
        self._templates: dict[frozenset[str], MessageTemplate] = {}
        self.web_url = external_url("archive.edition", edition_id=content.id)
        # Link prefixes resolved once; per reader only the signed token is added.
        self._unsubscribe = external_url("manage.unsubscribe_page", token="-")[:-1]
        self._preferences = external_url("manage.preferences", token="-")[:-1]
        self._date = date_header()
        self._return_path = verp.issuer()
        self._sign_unsubscribe = minter(Purpose.UNSUBSCRIBE)
        self._sign_preferences = minter(Purpose.PREFERENCES)

    def variant(self, reader_topics: Iterable[str]) -> frozenset[str]:
        """The part of the edition this reader gets: only the articles of their topics."""
        return self.content.topics & frozenset(reader_topics)

    def template(self, variant: frozenset[str]) -> MessageTemplate:
        found = self._templates.get(variant)
        if found is None:
            found = self._templates[variant] = self._render(variant)
        return found

    def _render(self, variant: frozenset[str]) -> MessageTemplate:
        sections = self.content.sections(variant)
        rendered = render.render(
            "digest",
            edition=self.content,
            sections=sections,
            lead=sections[0].articles[0] if sections else None,
            article_count=sum(len(section.articles) for section in sections),
            web_url=self.web_url,
            greeting=slot("greeting"),
            unsubscribe_url=slot("unsubscribe_url"),
            preferences_url=slot("preferences_url"),
        )
        return MessageTemplate(
            subject=rendered.subject,
            text=rendered.text,
            html_body=rendered.html,
            headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        )

    def message(self, reader: Reader) -> OutgoingMessage:
        payload = encoded_payload({"s": reader.uid})  # both links carry the same payload
        unsubscribe_url = self._unsubscribe + self._sign_unsubscribe.seal(payload)
        preferences_url = self._preferences + self._sign_preferences.seal(payload)
        name = single_line(reader.name)
        return self.template(self.variant(reader.topics)).personalize(
            reader.email,
            name,
            message_id=reader.message_id,
            values={
                "greeting": f"Hello {name}," if name else "Hello,",
                "unsubscribe_url": unsubscribe_url,
                "preferences_url": preferences_url,
            },
            headers={"List-Unsubscribe": f"<{unsubscribe_url}>"},
            date=self._date,
            # Bounces come back to an address naming this delivery; From is unchanged.
            envelope_sender=self._return_path(reader.delivery_id) if reader.delivery_id else None,
        )

    def refresh_date(self) -> None:
        """Date is shared by the messages of one chunk rather than formatted per reader."""
        self._date = date_header()
