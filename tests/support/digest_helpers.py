"""Building digests in tests: articles and readers as rows, received mail as parsed messages."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from itertools import count
from typing import Any

from flask import Flask
from sqlalchemy import select

from newsletter.clock import utcnow
from newsletter.db.models import Article, Delivery, Subscriber
from newsletter.extensions import db
from newsletter.readers.topics import slugify

_numbers = count(1)


def add_article(
    app: Flask,
    title: str,
    category: str = "Analytics",
    *,
    summary: str = "<p>What happened, and why it matters.</p>",
    url: str | None = None,
    source: str = "",
    minutes_ago: float | None = None,
    **columns: Any,
) -> str:
    """Insert one article published within the last hours (``columns``: more of its fields,
    such as ``author`` or ``image_url``); returns its URL."""
    number = next(_numbers)
    url = url or f"https://ledger.example/{slugify(category)}/story-{number}"
    with app.app_context():
        db.session.add(
            Article(
                guid=f"urn:test:digest:{number}",
                url=url,
                title=title,
                summary=summary,
                category=category,
                topic=slugify(category),
                source=source,
                published_at=utcnow() - timedelta(minutes=minutes_ago or number),
                **columns,
            )
        )
        db.session.commit()
    return url


def add_reader(
    app: Flask,
    email: str,
    topics: Iterable[str] = ("analytics",),
    *,
    name: str = "",
    status: str = "active",
    frequency: str = "daily",
) -> str:
    """Insert an active daily reader with these topic slugs; returns their opaque uid."""
    with app.app_context():
        subscriber = Subscriber(email=email, name=name, status=status, frequency=frequency)
        subscriber.topics = list(topics)
        db.session.add(subscriber)
        db.session.commit()
        return str(subscriber.uid)


def parse(data: bytes) -> EmailMessage:
    parsed: EmailMessage = message_from_bytes(data, policy=policy.default)
    return parsed


def text_part(message: EmailMessage) -> str:
    """The decoded text/plain part, line ends as "\\n"."""
    part = message.get_body(("plain",))
    assert part is not None, "no text/plain part"
    return str(part.get_content()).replace("\r\n", "\n")


def html_part(message: EmailMessage) -> str:
    """The decoded text/html part, line ends as "\\n"."""
    part = message.get_body(("html",))
    assert part is not None, "no text/html part"
    return str(part.get_content()).replace("\r\n", "\n")


def header_names(data: bytes) -> list[str]:
    """The names of the top-level header fields, in order, read from the raw bytes."""
    head = data.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].decode("ascii", "replace")
        for line in head.split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    ]


def raw_header(data: bytes, name: str) -> bytes:
    """A top-level header field exactly as sent, folding included (the first one found)."""
    head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    found = re.search(
        rb"^" + re.escape(name.encode()) + rb":.*?\r\n(?![ \t])", head, re.I | re.M | re.S
    )
    assert found, f"no {name} header in the raw message"
    return found.group(0)


def all_defects(message: EmailMessage) -> list[object]:
    """Every defect the parser found, in the message and each of its parts."""
    return [defect for part in message.walk() for defect in part.defects]


def delivery_rows(app: Flask, edition_id: int) -> dict[str, tuple[str, str | None, str | None]]:
    """Each reader's address with the state, recorded reason and Message-ID of their row."""
    with app.app_context():
        rows = db.session.execute(
            select(Subscriber.email, Delivery.state, Delivery.last_error, Delivery.message_id)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.edition_id == edition_id)
        )
        return {email: (state, error, mid) for email, state, error, mid in rows}
