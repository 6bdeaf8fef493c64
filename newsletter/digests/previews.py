"""Previews: the next edition as it would be mailed, for a reader or a set of topics.

Nothing here plans an edition or writes a ledger row: a preview has no edition id, its
Message-ID says "preview", and the CLI's ``digest preview`` and the console's preview and
"send a test to me" all build their mail here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy

from newsletter.clock import utcnow
from newsletter.db.models import Article
from newsletter.digests import planning
from newsletter.digests.compose import Composer, Reader, message_id
from newsletter.digests.content import EditionContent, article_view
from newsletter.mail.backends import get_backend
from newsletter.mail.message import OutgoingMessage

PREVIEW = "preview"


def next_content(frequency: str, now: datetime | None = None) -> EditionContent | None:
    """What the next edition of this frequency would hold now, or None: nothing new."""
    now = now or utcnow()
    return content_of(frequency, planning.choose_articles(frequency, now), now)


def content_of(frequency: str, articles: Sequence[Article], now: datetime) -> EditionContent | None:
    """These articles (``planning.choose_articles``'s) as a preview's content; None if none."""
    if not articles:
        return None
    return EditionContent(
        id=0, frequency=frequency, created_at=now, articles=tuple(map(article_view, articles))
    )


def reader(
    email: str,
    name: str,
    topics: Iterable[str],
    *,
    subscriber_id: int = 0,
    uid: str = PREVIEW,
    language: str | None = None,
) -> Reader:
    """A reader of a preview: its Message-ID names no edition, so no bounce finds a row."""
    return Reader(
        subscriber_id,
        uid,
        email,
        name,
        frozenset(topics),
        message_id(PREVIEW, uid),
        language=language,
    )


def message(content: EditionContent, to: Reader) -> OutgoingMessage:
    """The preview mail (no archive link: a preview is no edition)."""
    return Composer(content, preview=True).message(to)


@dataclass(frozen=True, slots=True)
class Shown:
    """A mail's subject and decoded parts, as a person reads them."""

    subject: str
    text: str
    html: str


def shown(mail: OutgoingMessage) -> Shown:
    parsed = message_from_bytes(mail.data, policy=policy.default)

    def body(kind: str) -> str:
        part = parsed.get_body((kind,))
        return "" if part is None else str(part.get_content())

    return Shown(subject=str(parsed["Subject"]), text=body("plain"), html=body("html"))


def send(mail: OutgoingMessage) -> None:
    """Hand one preview mail to the configured backend (raises MailError when refused)."""
    with get_backend() as backend:
        backend.send(mail)
