"""The site's articles: reading RSS/Atom feeds, cleaning their fields, storing unseen ones."""

from __future__ import annotations

import hashlib
import html as html_lib
import http.client
import json
import re
import time
import unicodedata
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

import feedparser
import nh3
from flask import current_app
from sqlalchemy import Insert, insert, select

from .errors import ConfigError, FeedError, InvalidArticle
from .extensions import db
from .models import Article
from .topics import slugify

# Column sizes of the article table; longer values are shortened or refused, never truncated
# by the database (PostgreSQL would refuse the whole batch).
GUID_MAX = 1000
URL_MAX = 2000
TITLE_MAX = 500
CATEGORY_MAX = 100
TOPIC_MAX = 64
SOURCE_MAX = 300
# A digest shows excerpts; a feed that puts whole articles in its summary is cut to about this.
SUMMARY_MAX = 2000

MAX_FEED_BYTES = 10 * 1024 * 1024
INSERT_CHUNK = 500
USER_AGENT = "newsletter-feed-fetcher/0.1"

ALLOWED_TAGS = {"p", "a", "em", "strong", "b", "i", "ul", "ol", "li", "br", "blockquote"}
ALLOWED_SCHEMES = {"http", "https", "mailto"}
# Dropped together with their content: their text is code or styling, never prose.
DROPPED_WITH_CONTENT = {"script", "style", "template", "noscript", "iframe", "object", "svg"}
_BLOCK_END = re.compile(r"<(?:br|/p|/li|/blockquote|/h[1-6]|/div|/tr|/ul|/ol)\b[^>]*>", re.I)
_EMPTY_PARAGRAPHS = re.compile(r"(?:<p>\s*</p>\s*)+$")
_WORDPRESS_FOOTER = re.compile(r"The post\s.+\sappeared first on\s.+", re.S)


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


@dataclass
class FeedReport:
    """What one feed fetch did: counts, and the entries it had to leave out."""

    feed: str
    added: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


# --- Cleaning -------------------------------------------------------------------------------


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
        html.replace("\x00", ""),
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
    """Drop control characters (NUL breaks PostgreSQL, others break headers and terminals)."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cc" or ch in "\t\n\r")


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


def split_source(summary_html: str) -> tuple[str, str]:
    """Separate a trailing WordPress "The post X appeared first on Y." line from a summary.

    Returns the summary without it and the attribution as plain text ("" when absent).
    """
    start = summary_html.rfind("The post")
    if start < 0:
        return summary_html, ""
    attribution = plain_text(summary_html[start:])
    if not _WORDPRESS_FOOTER.fullmatch(attribution):
        return summary_html, ""
    head = sanitize_html(summary_html[:start])
    head = _EMPTY_PARAGRAPHS.sub("", head).strip()
    return head, single_line(attribution.rstrip(". "), SOURCE_MAX)


# --- Building records -----------------------------------------------------------------------


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
    return parsed.astimezone(UTC)


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
    topic = slugify(clean_category)[:TOPIC_MAX].strip("-")
    if not topic:
        raise InvalidArticle("category", "missing" if not clean_category else "has no letters")

    body, footer = split_source(sanitize_html(summary or ""))
    clean_source = single_line(source, SOURCE_MAX) if source else footer

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
        source=clean_source,
        published_at=published,
    )


def _entry_time(entry: Mapping[str, Any]) -> datetime | None:
    """The entry's published (else updated) time as aware UTC; feedparser gives UTC tuples."""
    for key in ("published_parsed", "updated_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                year, month, day, hour, minute, second = parsed[:6]
                # A leap second (60) would make the whole date unusable.
                return datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
            except (TypeError, ValueError):
                continue
    return None


def _entry_summary(entry: Mapping[str, Any]) -> str:
    """The entry's summary, or (Atom feeds without one) its first content block."""
    summary = entry.get("summary") or ""
    if not summary:
        for content in entry.get("content") or []:
            summary = content.get("value") or ""
            if summary:
                break
    return str(summary)


def _entry_category(entry: Mapping[str, Any], default_category: str) -> str:
    """The first tag's term, or the default section for an untagged entry."""
    for tag in entry.get("tags") or []:
        term = single_line(str(tag.get("term") or tag.get("label") or ""), CATEGORY_MAX)
        if slugify(term):
            return term
    return default_category


def entry_label(entry: Mapping[str, Any], position: int) -> str:
    """Name an entry in messages: its position, and its title or guid when it has one."""
    title = single_line(str(entry.get("title") or ""), 60)
    if title:
        return f'entry {position} "{title}"'
    guid = single_line(str(entry.get("id") or ""), 80)
    return f"entry {position} (guid {guid})" if guid else f"entry {position}"


def parse_entry(
    entry: Mapping[str, Any], *, default_category: str, now: datetime | None = None
) -> ArticleRecord:
    """Turn one feedparser entry into an article; raises InvalidArticle (e.g. no link)."""
    link = str(entry.get("link") or "")
    if not link:
        raise InvalidArticle("link", "the entry has no link")
    title_detail = entry.get("title_detail") or {}
    return make_record(
        url=link,
        title=str(entry.get("title") or ""),
        title_is_html=title_detail.get("type") in ("text/html", "application/xhtml+xml"),
        category=_entry_category(entry, default_category),
        summary=_entry_summary(entry),
        published=_entry_time(entry),
        guid=str(entry.get("id") or "") or None,
        now=now,
    )


def read_entries(
    parsed: Mapping[str, Any], feed: str, *, default_category: str
) -> tuple[list[ArticleRecord], list[str]]:
    """Build records from a parsed feed; each unusable entry becomes a problem line."""
    records: list[ArticleRecord] = []
    problems: list[str] = []
    now = datetime.now(UTC)
    for position, entry in enumerate(parsed.get("entries") or [], start=1):
        try:
            records.append(parse_entry(entry, default_category=default_category, now=now))
        except InvalidArticle as exc:
            problems.append(f"{feed}: {entry_label(entry, position)}: {exc}")
    if parsed.get("bozo") and not records:
        # feedparser recovers what it can from broken XML; with nothing usable, the feed is
        # the problem, not its entries.
        raise FeedError(
            feed, f"not a well-formed RSS or Atom feed ({parsed.get('bozo_exception')})"
        )
    if not parsed.get("version") and not records:
        raise FeedError(feed, "not an RSS or Atom feed")
    return records, problems


IMPORT_FIELDS = ("guid", "url", "title", "category", "summary", "source", "published")
_REQUIRED_FIELDS = ("url", "title", "category")


def record_from_mapping(data: Any, *, now: datetime | None = None) -> ArticleRecord:
    """Validate one imported article object (keys as in IMPORT_FIELDS) into a record."""
    if not isinstance(data, dict):
        raise InvalidArticle("line", "is not a JSON object")
    unknown = sorted(set(data) - set(IMPORT_FIELDS))
    if unknown:
        raise InvalidArticle(unknown[0], f"unknown field (expected {', '.join(IMPORT_FIELDS)})")
    for name in IMPORT_FIELDS:
        value = data.get(name)
        if name in _REQUIRED_FIELDS and (value is None or value == ""):
            raise InvalidArticle(name, "missing")
        if value is not None and not isinstance(value, str):
            raise InvalidArticle(name, f"must be a string, not {type(value).__name__}")
    published = data.get("published")
    return make_record(
        url=data["url"],
        title=data["title"],
        category=data["category"],
        summary=data.get("summary") or "",
        source=data.get("source") or "",
        published=parse_published(published) if published else None,
        guid=data.get("guid") or None,
        now=now,
    )


def parse_import(data: bytes) -> tuple[list[ArticleRecord], list[str]]:
    """Read JSON lines into records, collecting "line N: field: reason" for every bad line."""
    records: list[ArticleRecord] = []
    errors: list[str] = []
    first_line_of: dict[str, int] = {}
    now = datetime.now(UTC)
    data = data.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark some editors write
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
            record = record_from_mapping(obj, now=now)
        except UnicodeDecodeError:
            errors.append(f"line {number}: not UTF-8 text")
            continue
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except InvalidArticle as exc:
            errors.append(f"line {number}: {exc}")
            continue
        if record.guid in first_line_of:
            errors.append(f"line {number}: guid: repeats line {first_line_of[record.guid]}")
            continue
        first_line_of[record.guid] = number
        records.append(record)
    return records, errors


# --- Fetching -------------------------------------------------------------------------------


def _is_url(url_or_path: str) -> bool:
    """True when the feed is named by a URL rather than a file path."""
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url_or_path))


def _download(url: str, timeout: float) -> tuple[bytes, dict[str, str]]:
    """GET a feed's bytes, giving up after about ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        url,
        headers={
            "User-Agent": USER_AGENT,
            "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
        },
    )
    chunks: list[bytes] = []
    size = 0
    try:
        # The socket timeout bounds each wait; the deadline bounds a server that trickles.
        with urllib.request.urlopen(request, timeout=timeout) as response:
            while chunk := response.read(64 * 1024):
                size += len(chunk)
                if size > MAX_FEED_BYTES:
                    raise FeedError(url, f"larger than {MAX_FEED_BYTES // (1024 * 1024)} MB")
                if time.monotonic() > deadline:
                    raise FeedError(url, f"timed out after {timeout:g} s")
                chunks.append(chunk)
            headers = {key.lower(): value for key, value in response.headers.items()}
            final_url = response.geturl()
    except HTTPError as exc:
        raise FeedError(url, f"HTTP {exc.code} {exc.reason}") from exc
    except URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise FeedError(url, f"timed out after {timeout:g} s") from exc
        raise FeedError(url, f"cannot connect ({exc.reason})") from exc
    except TimeoutError as exc:
        raise FeedError(url, f"timed out after {timeout:g} s") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise FeedError(url, f"download failed ({exc})") from exc
    # Relative links in the feed resolve against where it was finally served from.
    headers["content-location"] = final_url
    return b"".join(chunks), headers


def _read_file(path: str) -> bytes:
    """Read a feed file, refusing missing, unreadable or oversized ones."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_FEED_BYTES + 1)
    except OSError as exc:
        raise FeedError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    if len(data) > MAX_FEED_BYTES:
        raise FeedError(path, f"larger than {MAX_FEED_BYTES // (1024 * 1024)} MB")
    return data


def fetch_feed(url_or_path: str, timeout: float) -> Any:
    """Download (http/https) or read (file path) a feed and parse it with feedparser.

    feedparser only ever sees bytes, so it never makes a request of its own (without a
    timeout). Raises FeedError naming the feed when it cannot be had at all.
    """
    if _is_url(url_or_path):
        if urlsplit(url_or_path).scheme.lower() not in ("http", "https"):
            raise FeedError(url_or_path, "only http and https URLs or local file paths are read")
        data, headers = _download(url_or_path, timeout)
    else:
        data = _read_file(url_or_path)
        headers = {"content-type": "application/xml"}
    headers.setdefault("content-type", "application/xml")
    try:
        return feedparser.parse(data, response_headers=headers)
    except Exception as exc:  # feedparser is meant not to raise; a crash is still one bad feed
        raise FeedError(url_or_path, f"could not be parsed ({exc})") from exc


# --- Storing --------------------------------------------------------------------------------


def _chunks(records: Iterable[ArticleRecord], size: int) -> Iterator[list[ArticleRecord]]:
    """Yield lists of at most ``size`` records."""
    chunk: list[ArticleRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _insert_ignoring_duplicates() -> Insert:
    """An INSERT that skips guids a concurrent fetch stored first (SQLite and PostgreSQL)."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(Article).on_conflict_do_nothing(index_elements=["guid"])
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(Article).on_conflict_do_nothing(index_elements=["guid"])
    return insert(Article)


def upsert_articles(records: Iterable[ArticleRecord]) -> tuple[int, int]:
    """Insert the records whose guid is not stored yet; returns (added, skipped).

    One query per chunk finds the known guids, one bulk INSERT adds the rest. The caller
    commits, so an import can be all-or-nothing.
    """
    added = skipped = 0
    seen: set[str] = set()
    for chunk in _chunks(records, INSERT_CHUNK):
        unique = []
        for record in chunk:
            if record.guid in seen:
                skipped += 1
            else:
                seen.add(record.guid)
                unique.append(record)
        if not unique:
            continue
        guids = [record.guid for record in unique]
        known = set(db.session.scalars(select(Article.guid).where(Article.guid.in_(guids))))
        fresh = [asdict(record) for record in unique if record.guid not in known]
        skipped += len(unique) - len(fresh)
        if fresh:
            inserted = db.session.scalars(
                _insert_ignoring_duplicates().returning(Article.id), fresh
            ).all()
            added += len(inserted)
            skipped += len(fresh) - len(inserted)
    return added, skipped


def default_category() -> str:
    """The section an untagged feed entry is filed under: the first configured topic."""
    return str(current_app.config["TOPICS"][0])


def feed_timeout() -> float:
    """The configured per-feed timeout in seconds."""
    value = current_app.config["FEED_TIMEOUT"]
    try:
        timeout = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError("NEWSLETTER_FEED_TIMEOUT", f"{value!r} is not a number") from exc
    if timeout <= 0:
        raise ConfigError("NEWSLETTER_FEED_TIMEOUT", "must be more than 0 seconds")
    return timeout


def fetch_and_store(url_or_path: str, *, timeout: float | None = None) -> FeedReport:
    """Fetch one feed and store its unseen articles, committing; raises FeedError if unusable."""
    parsed = fetch_feed(url_or_path, feed_timeout() if timeout is None else timeout)
    records, problems = read_entries(parsed, url_or_path, default_category=default_category())
    try:
        added, skipped = upsert_articles(records)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return FeedReport(feed=url_or_path, added=added, skipped=skipped, problems=problems)


def recent_articles(limit: int = 20, topic: str | None = None) -> list[Article]:
    """The newest articles first, optionally only one topic's."""
    query = select(Article).order_by(Article.published_at.desc(), Article.id.desc()).limit(limit)
    if topic:
        query = query.where(Article.topic == topic)
    return list(db.session.scalars(query))
