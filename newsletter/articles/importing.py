"""Importing articles from JSON lines: every line checked, all or nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from newsletter.articles.cleaning import ArticleRecord, lead_image, make_record, parse_published
from newsletter.errors import InvalidArticle

IMPORT_FIELDS = (
    "guid",
    "url",
    "title",
    "category",
    "summary",
    "source",
    "published",
    "author",
    "image_url",
    "image_alt",
    "image_width",
    "image_height",
)


_NUMBER_FIELDS = ("image_width", "image_height")


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
        if name in _NUMBER_FIELDS:
            # bool is an int to Python, never a size to a person.
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise InvalidArticle(name, f"must be a whole number, not {type(value).__name__}")
        elif value is not None and not isinstance(value, str):
            raise InvalidArticle(name, f"must be a string, not {type(value).__name__}")
    if not data.get("image_url"):
        for name in ("image_alt", *_NUMBER_FIELDS):
            if data.get(name) is not None:
                raise InvalidArticle(name, "given without image_url")
    image = None
    if data.get("image_url"):
        image = lead_image(
            data["image_url"],
            width=data.get("image_width"),
            height=data.get("image_height"),
            alt=data.get("image_alt") or "",
        )
    published = data.get("published")
    return make_record(
        url=data["url"],
        title=data["title"],
        category=data["category"],
        summary=data.get("summary") or "",
        source=data.get("source") or "",
        published=parse_published(published) if published else None,
        guid=data.get("guid") or None,
        author=data.get("author") or "",
        image=image,
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
