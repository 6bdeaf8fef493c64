"""Composing a digest: one rendering per distinct content, personalized per reader."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, literal

from newsletter import i18n
from newsletter.db.models import EditionKind, Subscriber
from newsletter.digests.content import EditionContent, Section
from newsletter.mail import render, verp
from newsletter.mail.message import (
    MessageTemplate,
    OutgoingMessage,
    date_header,
    mail_domain,
    single_line,
    slot,
)
from newsletter.readers import topics
from newsletter.tokens import Purpose, encoded_payload, minter
from newsletter.urls import external_url

# A digest's Message-ID, ``<digest.EDITION.UID@domain>``, deterministic per edition and
# reader so that a resend would be recognizable as one, and so that a bounce quoting it
# names its delivery. The one format, written as a string, as SQL and as a pattern.
_MESSAGE_ID = re.compile(r"<digest\.(\d{1,18})\.([A-Za-z0-9_-]{1,32})@[^<>\s]+>")


def message_id(edition_id: int | str, uid: str) -> str:
    """The Message-ID of one reader's copy of an edition."""
    return f"<digest.{edition_id}.{uid}@{mail_domain()}>"


def message_id_column(edition_id: int) -> ColumnElement[str]:
    """``message_id`` as SQL, so planning writes it with the ledger rows in one statement."""
    return literal(f"<digest.{edition_id}.") + Subscriber.uid + literal(f"@{mail_domain()}>")


def parse_message_id(value: str) -> tuple[int, str] | None:
    """(edition id, reader uid) of a Message-ID in our digest format, or None."""
    found = _MESSAGE_ID.fullmatch(value)
    if found is None:
        return None
    return int(found.group(1)), found.group(2)


# Inboxes show about a line of it; more titles would only be cut off.
PREHEADER_TITLES = 3


def preheader(sections: Sequence[Section]) -> str:
    """The inbox snippet: the first headlines, rather than the masthead and the greeting."""
    titles = [article.title for section in sections for article in section.articles]
    return " · ".join(titles[:PREHEADER_TITLES])


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
    language: str | None = None  # as stored: None (or one no longer offered) is the site's


@dataclass(frozen=True, slots=True)
class Variant:
    """One rendering of an edition, and the greetings said in its language."""

    template: MessageTemplate
    # "Hello %(name)s," around the name, so a reader's greeting is joined, not formatted.
    before_name: str
    after_name: str
    hello: str  # "Hello,", for a reader without a name


class Composer:
    """Builds each reader's digest from one MessageTemplate per distinct set of topics and
    language."""

    def __init__(self, content: EditionContent, *, preview: bool = False) -> None:
        self.content = content
        self._variants: dict[tuple[frozenset[str], str], Variant] = {}
        languages = i18n.offered()
        self._languages = frozenset(languages)
        self._default = languages[0]
        self._several = len(languages) > 1
        # A preview is no edition: no archive page to point at.
        self.preview = preview
        # Link prefixes resolved once; per reader only the signed token is added.
        self._unsubscribe = external_url("manage.unsubscribe_page", token="-")[:-1]
        self._preferences = external_url("manage.preferences", token="-")[:-1]
        self._date = date_header()
        self._return_path = verp.issuer()
        self._sign_unsubscribe = minter(Purpose.UNSUBSCRIBE)
        self._sign_preferences = minter(Purpose.PREFERENCES)

    def variant(self, reader_topics: Iterable[str]) -> frozenset[str]:
        """The part of the edition this reader gets: only the articles of their topics.

        An alert is one article for the readers of its topic: all get the same mail.
        """
        if self.content.kind == EditionKind.ALERT:
            return self.content.topics
        return self.content.topics & frozenset(reader_topics)

    def _web_url(self, language: str) -> str | None:
        if self.preview:
            return None
        if self._several:
            # The archive page opens in the reader's language, whatever their browser says.
            return external_url("archive.edition", edition_id=self.content.id, lang=language)
        return external_url("archive.edition", edition_id=self.content.id)

    def _render(self, variant: frozenset[str], language: str) -> Variant:
        """Render the edition for these topics in this language, once: it is kept."""
        sections = self.content.sections(variant)
        alert = self.content.kind == EditionKind.ALERT
        rendered = render.render(
            "alert" if alert else "digest",
            language,
            topic_name=topics.available().get(self.content.topic or "", self.content.topic),
            edition=self.content,
            sections=sections,
            lead=sections[0].articles[0] if sections else None,
            preheader=preheader(sections),
            article_count=sum(len(section.articles) for section in sections),
            web_url=self._web_url(language),
            greeting=slot("greeting"),
            unsubscribe_url=slot("unsubscribe_url"),
            preferences_url=slot("preferences_url"),
        )
        template = MessageTemplate(
            subject=rendered.subject,
            text=rendered.text,
            html_body=rendered.html,
            headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        )
        with i18n.speaking(language):
            # Said once per rendering; per reader only the name is put in.
            named = i18n.gettext("Hello %(name)s,", name="%(name)s")
            hello = i18n.gettext("Hello,")
        before, _, after = named.partition("%(name)s")
        found = self._variants[(variant, language)] = Variant(template, before, after, hello)
        return found

    def message(self, reader: Reader) -> OutgoingMessage:
        payload = encoded_payload({"s": reader.uid})  # both links carry the same payload
        unsubscribe_url = self._unsubscribe + self._sign_unsubscribe.seal(payload)
        preferences_url = self._preferences + self._sign_preferences.seal(payload)
        name = single_line(reader.name)
        # Per reader only lookups: the variant is rendered once, by the first who needs it.
        language = reader.language if reader.language in self._languages else self._default
        key = (self.variant(reader.topics), language)
        variant = self._variants.get(key) or self._render(*key)
        return variant.template.personalize(
            reader.email,
            name,
            message_id=reader.message_id,
            values={
                "greeting": f"{variant.before_name}{name}{variant.after_name}"
                if name
                else variant.hello,
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
