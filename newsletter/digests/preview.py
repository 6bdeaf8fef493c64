"""The next edition as it would go out, rendered for one reader, recording nothing.

``newsletter digest preview``, the console and the API's preview all render through here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from email import message_from_bytes, policy

from newsletter.clock import utcnow
from newsletter.digests import planning
from newsletter.digests.compose import Composer, Reader, message_id
from newsletter.digests.content import EditionContent, article_view


@dataclass(frozen=True, slots=True)
class Rendered:
    """One reader's copy of a previewed edition: the whole message and its parts."""

    subject: str
    text: str
    html: str
    data: bytes


def next_content(frequency: str) -> EditionContent | None:
    """What the next edition of this frequency would hold now; None with nothing new."""
    now = utcnow()
    articles = planning.choose_articles(frequency, now)
    if not articles:
        return None
    return EditionContent(
        id=0, frequency=frequency, created_at=now, articles=tuple(map(article_view, articles))
    )


def sample_reader(topics: Iterable[str]) -> Reader:
    """A made-up reader of these topics (no one's address, no one's links)."""
    return Reader(
        0,
        "preview",
        "reader@example.com",
        "Reader",
        frozenset(topics),
        message_id("preview", "preview"),
    )


def render(content: EditionContent, reader: Reader) -> Rendered:
    """The message this reader would get, with a note in place of the archive link."""
    data = Composer(content, preview=True).message(reader).data
    parsed = message_from_bytes(data, policy=policy.default)
    parts = {}
    for kind in ("plain", "html"):
        body = parsed.get_body((kind,))
        parts[kind] = "" if body is None else str(body.get_content())
    return Rendered(str(parsed["Subject"]), parts["plain"], parts["html"], data)
