"""Feeds: downloading (or reading) RSS/Atom with bounded time and size, and their entries."""

from __future__ import annotations

import http.client
import re
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

import feedparser
from flask import current_app

from newsletter.articles.cleaning import (
    AUTHOR_MAX,
    CATEGORY_MAX,
    ArticleRecord,
    LeadImage,
    lead_image,
    make_record,
    single_line,
)
from newsletter.errors import ConfigError, FeedDeferred, FeedError, InvalidArticle

MAX_FEED_BYTES = 10 * 1024 * 1024


USER_AGENT = "newsletter-feed-fetcher/0.1"


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
        if any(ch.isalnum() for ch in term):  # a term of symbols names no section
            return term
    return default_category


def _entry_author(entry: Mapping[str, Any]) -> str:
    """The byline: the author's name. RSS's <author> is an address, "jo@host (Jo Bloggs)",
    which feedparser does not always take apart; an address alone is never shown."""
    raw = str(entry.get("author") or "")
    named = _ADDRESS_WITH_NAME.fullmatch(raw)
    name = named.group(1) if named else str((entry.get("author_detail") or {}).get("name") or raw)
    return "" if "@" in name else single_line(name, AUTHOR_MAX)


_ADDRESS_WITH_NAME = re.compile(r"\s*\S+@\S+\s+\((.+)\)\s*", re.S)


def _pixels(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _entry_image(entry: Mapping[str, Any]) -> LeadImage | None:
    """The first usable picture of media:content, media:thumbnail or an image enclosure.

    A feed's image is a nicety: one that is not https, or has a nonsensical size, is left
    out (its size only, when that is what is wrong) and the article kept.
    """
    candidates = [
        (item.get("url"), item.get("width"), item.get("height"))
        for item in entry.get("media_content") or []
        if item.get("medium", "image") == "image"
        and str(item.get("type", "image/")).startswith("image/")
    ]
    candidates += [
        (item.get("url"), item.get("width"), item.get("height"))
        for item in entry.get("media_thumbnail") or []
    ]
    candidates += [
        (item.get("href"), None, None)
        for item in entry.get("enclosures") or []
        if str(item.get("type") or "").startswith("image/")
    ]
    for url, width, height in candidates:
        if not url:
            continue
        try:
            return lead_image(str(url), width=_pixels(width), height=_pixels(height))
        except InvalidArticle as exc:
            if exc.field == "image_url":
                continue
            return lead_image(str(url))
    return None


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
        author=_entry_author(entry),
        image=_entry_image(entry),
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


def is_url(url_or_path: str) -> bool:
    """True when the feed is named by a URL rather than a file path."""
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url_or_path))


@dataclass(frozen=True, slots=True)
class Validators:
    """What a server's last answer lets the next request ask: "changed since then?"."""

    etag: str | None = None
    last_modified: str | None = None


class Fetched(NamedTuple):
    """A feed as fetched: parsed, or None when the server said it has not changed."""

    parsed: Any | None
    validators: Validators


# A server asking for more than a day is treated as asking for a day.
MAX_RETRY_AFTER = timedelta(days=1)


def _validator(value: str | None, limit: int) -> str | None:
    """A validator from the server, if it is one we can send back as it came (printable
    ASCII that fits its column); anything else is dropped, and the next fetch is plain."""
    if value and len(value) <= limit and value.isascii() and value.isprintable():
        return value
    return None


def _retry_after(value: str | None, now: datetime) -> datetime | None:
    """The moment a Retry-After header (seconds, or an HTTP date) names, or None."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):
        # More than nine digits is more than a day anyway; int() of thousands would not be.
        seconds = int(value) if len(value) <= 9 else 10**9
        return now + min(timedelta(seconds=seconds), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # "-0000" and zone-less dates: HTTP dates are GMT
    return now + min(max(when - now, timedelta(0)), MAX_RETRY_AFTER)


def _download(
    url: str, timeout: float, since: Validators | None = None
) -> tuple[bytes | None, dict[str, str]]:
    """GET a feed's bytes, giving up after about ``timeout`` seconds in all.

    With ``since``, the request is conditional; the answer is None when the server says
    the feed has not changed (304 Not Modified, with no body).
    """
    deadline = time.monotonic() + timeout
    asked = {
        "User-Agent": USER_AGENT,
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
    }
    if since is not None and since.etag:
        asked["If-None-Match"] = since.etag
    if since is not None and since.last_modified:
        asked["If-Modified-Since"] = since.last_modified
    request = urllib.request.Request(url, headers=asked)
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
        exc.close()
        if exc.code == 304:
            return None, {key.lower(): value for key, value in exc.headers.items()}
        until = None
        if exc.code in (429, 503):
            until = _retry_after(exc.headers.get("Retry-After"), datetime.now(UTC))
        if until is not None:
            raise FeedDeferred(url, f"HTTP {exc.code} {exc.reason}", until) from exc
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


def fetch_feed(url_or_path: str, timeout: float, since: Validators | None = None) -> Fetched:
    """Download (http/https) or read (file path) a feed and parse it with feedparser.

    feedparser only ever sees bytes, so it never makes a request of its own (without a
    timeout). Raises FeedError naming the feed when it cannot be had at all, FeedDeferred
    when its server asks us to wait.
    """
    if is_url(url_or_path):
        if urlsplit(url_or_path).scheme.lower() not in ("http", "https"):
            raise FeedError(url_or_path, "only http and https URLs or local file paths are read")
        data, headers = _download(url_or_path, timeout, since)
    else:
        data = _read_file(url_or_path)
        headers = {"content-type": "application/xml"}
    validators = Validators(
        _validator(headers.get("etag"), 500), _validator(headers.get("last-modified"), 100)
    )
    if data is None:
        # Not modified: the server may leave its validators out of a 304; keep ours.
        kept = since or Validators()
        return Fetched(
            None,
            Validators(
                validators.etag or kept.etag, validators.last_modified or kept.last_modified
            ),
        )
    headers.setdefault("content-type", "application/xml")
    try:
        parsed = feedparser.parse(data, response_headers=headers)
    except Exception as exc:  # feedparser is meant not to raise; a crash is still one bad feed
        raise FeedError(url_or_path, f"could not be parsed ({exc})") from exc
    return Fetched(parsed, validators)


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
