"""Cleaning outside text into an article: sanitized HTML, plain text, checked fields."""

from __future__ import annotations

import hashlib
import html as html_lib
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import nh3

from newsletter.errors import InvalidArticle
from newsletter.mail.message import SLOT_CLOSE, SLOT_OPEN
from newsletter.readers.topics import slugify

# Column sizes of the article table; longer values are shortened or refused, never truncated
# by the database (PostgreSQL would refuse the whole batch).
GUID_MAX = 1000


URL_MAX = 2000


TITLE_MAX = 500


CATEGORY_MAX = 100


TOPIC_MAX = 64


SOURCE_MAX = 300


AUTHOR_MAX = 300


IMAGE_ALT_MAX = 300


# Larger than any real image; a bigger number is a typo, and would reserve a screen's worth.
IMAGE_SIDE_MAX = 10_000


# A digest shows excerpts; a feed that puts whole articles in its summary is cut to about this.
SUMMARY_MAX = 2000


ALLOWED_TAGS = {"p", "a", "em", "strong", "b", "i", "ul", "ol", "li", "br", "blockquote"}


ALLOWED_SCHEMES = {"http", "https", "mailto"}


# Dropped together with their content: their text is code or styling, never prose.
DROPPED_WITH_CONTENT = {"script", "style", "template", "noscript", "iframe", "object", "svg"}


_BLOCK_END = re.compile(r"<(?:br|/p|/li|/blockquote|/h[1-6]|/div|/tr|/ul|/ol)\b[^>]*>", re.I)


_EMPTY_PARAGRAPHS = re.compile(r"(?:<p>\s*</p>\s*)+$")


# The composer's slot markers (private-use characters) are never article text.
_NOT_TEXT = {SLOT_OPEN, SLOT_CLOSE}
_WORDPRESS_FOOTER = re.compile(r"The post\s.+\sappeared first on\s.+", re.S)
# WordPress ends a cut excerpt with "[…]" (or "[...]"); the digest's own "…" says the same.
_EXCERPT_MARK = re.compile(r"\s*\[(?:…|&#8230;|&hellip;|\.\.\.)\]")


@dataclass(frozen=True, slots=True)
class LeadImage:
    """An article's picture as a feed or import names it: https only, size when known."""

    url: str
    width: int | None = None
    height: int | None = None
    alt: str = ""


@dataclass(frozen=True)
class ArticleRecord:
    """One article's cleaned fields, ready for the article table."""

    guid: str
    url: str
    title: str
    summary: str
    category: str
    topic: str
    source: str
    published_at: datetime
    author: str | None = None
    image_url: str | None = None
    image_alt: str | None = None
    image_width: int | None = None
    image_height: int | None = None


def _keep_attribute(element: str, attribute: str, value: str) -> str | None:
    """Keep only a link's href (absolute http, https or mailto) and its rel."""
    if element != "a":
        return None
    if attribute == "rel":
        return value
    if attribute == "href" and _is_allowed_link(value):
        return value
    return None


def _is_allowed_link(url: str) -> bool:
    """True for absolute http(s) URLs with a host and for mailto: links."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "mailto":
        return True
    return scheme in ("http", "https") and bool(parts.netloc)


def sanitize_html(html: str) -> str:
    """Reduce feed HTML to the allow-listed tags, safe links and no script or style text."""
    cleaned = nh3.clean(
        "".join(ch for ch in html if ch != "\x00" and ch not in _NOT_TEXT),
        tags=ALLOWED_TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes={"a": {"href"}},
        attribute_filter=_keep_attribute,
        url_schemes=ALLOWED_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
    return str(cleaned).strip()


def _strip_controls(text: str) -> str:
    """Drop control characters (NUL breaks PostgreSQL, others break headers and terminals)
    and the composer's slot markers."""
    return "".join(
        ch
        for ch in text
        if (unicodedata.category(ch) != "Cc" or ch in "\t\n\r") and ch not in _NOT_TEXT
    )


def single_line(text: str, limit: int) -> str:
    """Collapse every run of whitespace (CR and LF included) to one space and cap the length."""
    collapsed = " ".join(_strip_controls(text).split())
    if len(collapsed) <= limit:
        return collapsed
    return collapsed[: limit - 1].rstrip() + "…"


def plain_text(html: str, limit: int = 100_000) -> str:
    """The text of an HTML fragment on one line, tags removed and entities decoded."""
    spaced = _BLOCK_END.sub(lambda m: m.group(0) + " ", html)
    text = nh3.clean(spaced, tags=set(), clean_content_tags=DROPPED_WITH_CONTENT)
    return single_line(html_lib.unescape(str(text)), limit)


def _truncate_html(html: str, limit: int) -> str:
    """Shorten sanitized HTML to about ``limit`` characters without leaving a broken tag."""
    if len(html) <= limit:
        return html
    cut = html[:limit]
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    if cut.rfind("&") > cut.rfind(";"):
        cut = cut[: cut.rfind("&")]
    # Cleaning again closes the tags the cut left open.
    return sanitize_html(cut.rstrip() + "…")


def strip_boilerplate(summary_html: str) -> str:
    """A summary without the feed's boilerplate: WordPress's trailing "The post X appeared
    first on Y." line and its "[…]" excerpt mark, which say nothing to a reader of the digest.
    """
    summary_html = _EXCERPT_MARK.sub("…", summary_html)
    start = summary_html.rfind("The post")
    if start < 0 or not _WORDPRESS_FOOTER.fullmatch(plain_text(summary_html[start:])):
        return summary_html
    head = sanitize_html(summary_html[:start])
    return _EMPTY_PARAGRAPHS.sub("", head).strip()


def lead_image(
    url: str, *, width: int | None = None, height: int | None = None, alt: str = ""
) -> LeadImage:
    """Check an article's image; raises InvalidArticle naming the bad part.

    Only https: a mail client warns about, or blocks, mixed content, and an http image
    tells a network observer who opened which digest.
    """
    url = _strip_controls(url).strip()
    parts = urlsplit(url)
    if parts.scheme.lower() != "https" or not parts.netloc:
        raise InvalidArticle("image_url", f"{url[:80]!r} is not an absolute https URL")
    if len(url) > URL_MAX:
        raise InvalidArticle("image_url", f"longer than {URL_MAX} characters")
    for name, side in (("image_width", width), ("image_height", height)):
        if side is not None and not 0 < side <= IMAGE_SIDE_MAX:
            raise InvalidArticle(name, f"must be a number of pixels from 1 to {IMAGE_SIDE_MAX}")
    return LeadImage(url=url, width=width, height=height, alt=single_line(alt, IMAGE_ALT_MAX))


def parse_published(value: str) -> datetime:
    """Read an ISO 8601 date or time; without an offset it is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidArticle(
            "published", f"{value!r} is not an ISO 8601 date (e.g. 2026-11-23T08:15:00+00:00)"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in the year 0 in UTC
        raise InvalidArticle("published", f"{value!r} is out of range") from None


def _stable_guid(guid: str) -> str:
    """Keep a guid within its column; an over-long one is hashed, since cutting could collide."""
    guid = _strip_controls(guid).strip()
    if len(guid) <= GUID_MAX:
        return guid
    return "sha256:" + hashlib.sha256(guid.encode("utf-8")).hexdigest()


def make_record(
    *,
    url: str,
    title: str,
    category: str,
    summary: str = "",
    source: str = "",
    published: datetime | None = None,
    guid: str | None = None,
    author: str = "",
    image: LeadImage | None = None,
    title_is_html: bool = False,
    now: datetime | None = None,
) -> ArticleRecord:
    """Validate and clean one article's fields; raises InvalidArticle naming the bad field."""
    now = now or datetime.now(UTC)
    url = _strip_controls(url or "").strip()
    if not url:
        raise InvalidArticle("url", "missing")
    if len(url) > URL_MAX:
        raise InvalidArticle("url", f"longer than {URL_MAX} characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise InvalidArticle("url", f"{url[:80]!r} is not an absolute http(s) URL")

    clean_title = plain_text(title, TITLE_MAX) if title_is_html else single_line(title, TITLE_MAX)
    if not clean_title:
        raise InvalidArticle("title", "missing")

    clean_category = single_line(category or "", CATEGORY_MAX)
    if not any(ch.isalnum() for ch in clean_category):
        raise InvalidArticle("category", "missing" if not clean_category else "has no letters")
    topic = slugify(clean_category)[:TOPIC_MAX].strip("-")

    body = strip_boilerplate(sanitize_html(summary or ""))

    if published is None:
        published = now
    elif published.tzinfo is None:
        raise InvalidArticle("published", "has no time zone")
    # A feed with a wrong clock must not date an article in the future, where a digest
    # covering "up to now" would pass it over.
    published = min(published.astimezone(UTC), now)

    return ArticleRecord(
        guid=_stable_guid(guid or url),
        url=url,
        title=clean_title,
        summary=_truncate_html(body, SUMMARY_MAX),
        category=clean_category,
        topic=topic,
        source=single_line(source or "", SOURCE_MAX),
        published_at=published,
        author=single_line(author or "", AUTHOR_MAX) or None,
        image_url=image.url if image else None,
        image_alt=(image.alt or None) if image else None,
        image_width=image.width if image else None,
        image_height=image.height if image else None,
    )
