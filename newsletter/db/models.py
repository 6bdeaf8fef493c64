"""Database tables: readers, consent, suppression, articles, editions and the delivery ledger."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from newsletter.clock import utcnow
from newsletter.extensions import db


class Status(StrEnum):
    """Where a reader stands; only ``active`` readers are mailed digests."""

    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


# These readers asked for the newsletter and have not withdrawn: the ones a withdrawal changes.
CONSENTING = frozenset({Status.PENDING, Status.ACTIVE})
# These readers withdrew or lost consent: only their own signup and confirmation bring them back.
WITHDRAWN = frozenset({Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED})


class Frequency(StrEnum):
    """How often a reader gets a digest, and so which editions they are in."""

    DAILY = "daily"
    WEEKLY = "weekly"


class EditionKind(StrEnum):
    """A scheduled digest of many articles, or one breaking-news article sent at once."""

    DIGEST = "digest"
    ALERT = "alert"


class Role(StrEnum):
    """What a console operator may do: editors preview and send; owners also erase, export
    and manage operators and settings."""

    OWNER = "owner"
    EDITOR = "editor"


class Scope(StrEnum):
    """What an API token may do."""

    SUBSCRIBE = "subscribe"  # start a double opt-in, as the signup form does
    READ = "read"  # look readers and editions up, export a reader's data
    SEND = "send"  # push articles, send editions and alerts, unsubscribe an address


class EditionState(StrEnum):
    SENDING = "sending"
    DONE = "done"


class DeliveryState(StrEnum):
    """A ledger row's life: see ``digests.ledger``."""

    QUEUED = "queued"
    SENDING = "sending"
    ATTEMPTING = "attempting"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"


class BounceKind(StrEnum):
    """What a bounce or report means for the reader's address."""

    HARD = "hard"  # the address does not exist: suppress at once
    SOFT = "soft"  # temporary (mailbox full): suppress after N within a window
    POLICY = "policy"  # about us (spam, block lists, DMARC): alert, never suppress
    COMPLAINT = "complaint"  # the reader marked us as spam: suppress at once


def _among(values: type[StrEnum]) -> str:
    """An SQL ``IN`` list of an enum's values, for CHECK constraints."""
    return "(" + ", ".join(f"'{value.value}'" for value in values) + ")"


def new_uid() -> str:
    """An opaque public id: tokens and URLs carry this, never the address or the row id."""
    return secrets.token_urlsafe(16)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime stored; use an aware UTC datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # PostgreSQL answers in the session's time zone, which need not be UTC.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Subscriber(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "subscriber"
    __table_args__ = (
        CheckConstraint(f"status IN {_among(Status)}", name="status"),
        CheckConstraint(f"frequency IN {_among(Frequency)}", name="frequency"),
        Index("ix_subscriber_status_frequency", "status", "frequency"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_uid)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(16), default=Status.PENDING)
    frequency: Mapped[str] = mapped_column(String(8), default=Frequency.WEEKLY)
    # Set when a confirmation mail is issued and cleared when it is used or withdrawn, so a
    # confirm link replayed after an unsubscribe cannot subscribe the reader again.
    confirm_nonce: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Indexed for the console's growth and churn by day. The search indexes, on lower(name)
    # and email in byte order, are spelled per database in migration 0009.
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    # Breaking-news alerts for the reader's topics, on unless the reader turned them off.
    alerts: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The reader's language (a code of LANGUAGES) and IANA time zone; None means the site's.
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)

    topic_rows: Mapped[list[SubscriberTopic]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="SubscriberTopic.topic"
    )

    @property
    def topics(self) -> list[str]:
        return [row.topic for row in self.topic_rows]

    @topics.setter
    def topics(self, slugs: list[str]) -> None:
        wanted = set(slugs)
        self.topic_rows = [row for row in self.topic_rows if row.topic in wanted]
        have = {row.topic for row in self.topic_rows}
        self.topic_rows.extend(SubscriberTopic(topic=slug) for slug in slugs if slug not in have)


class SubscriberTopic(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "subscriber_topic"
    __table_args__ = (Index("ix_subscriber_topic_topic", "topic", "subscriber_id"),)

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscriber.id", ondelete="CASCADE"), primary_key=True
    )
    topic: Mapped[str] = mapped_column(String(64), primary_key=True)


class ConsentEvent(db.Model):  # type: ignore[name-defined,misc]
    """One line of the append-only consent log: a request, a confirmation or a withdrawal."""

    __tablename__ = "consent_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriber.id", ondelete="SET NULL"), index=True
    )
    action: Mapped[str] = mapped_column(String(24))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(120))
    consent_version: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Suppression(db.Model):  # type: ignore[name-defined,misc]
    """An address that must not be mailed, kept only as a hash."""

    __tablename__ = "suppression"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@event.listens_for(Session, "before_flush")
def _consent_log_is_append_only(session: Session, flush_context: Any, instances: Any) -> None:
    changed = [obj for obj in (*session.dirty, *session.deleted) if isinstance(obj, ConsentEvent)]
    if any(obj in session.deleted or session.is_modified(obj) for obj in changed):
        raise RuntimeError("the consent log is append-only")


class ConsentWording(db.Model):  # type: ignore[name-defined,misc]
    """Each version of the consent text readers agreed to, so the log is self-describing."""

    __tablename__ = "consent_wording"

    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    text: Mapped[str] = mapped_column(String(2000))
    first_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Editions reach a million readers: the ledger's ids must not run out.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Article(db.Model):  # type: ignore[name-defined,misc]
    """One article of the site, identified by its feed guid (or link)."""

    __tablename__ = "article"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guid: Mapped[str] = mapped_column(String(1000), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    title: Mapped[str] = mapped_column(String(500))
    summary: Mapped[str] = mapped_column(Text, default="")  # sanitized HTML
    category: Mapped[str] = mapped_column(String(100))  # the site's section, as shown
    topic: Mapped[str] = mapped_column(String(64), index=True)  # its slug
    source: Mapped[str] = mapped_column(String(300), default="")
    author: Mapped[str | None] = mapped_column(String(300))  # the byline, when the feed has one
    # An optional lead image (https only); its size when known, so clients reserve the space.
    image_url: Mapped[str | None] = mapped_column(String(2000))
    image_alt: Mapped[str | None] = mapped_column(String(300))
    image_width: Mapped[int | None] = mapped_column(Integer)
    image_height: Mapped[int | None] = mapped_column(Integer)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Edition(db.Model):  # type: ignore[name-defined,misc]
    """One digest: which articles, for which frequency, and how far its sending has got."""

    __tablename__ = "edition"
    __table_args__ = (
        CheckConstraint(f"frequency IN {_among(Frequency)}", name="frequency"),
        CheckConstraint(f"state IN {_among(EditionState)}", name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # An alert keeps a frequency (the column predates alerts and may not be empty) that no
    # digest query reads: they all ask for kind = digest.
    frequency: Mapped[str] = mapped_column(String(8), index=True)
    kind: Mapped[str] = mapped_column(
        String(8), default=EditionKind.DIGEST, server_default=EditionKind.DIGEST.value
    )
    topic: Mapped[str | None] = mapped_column(String(64), default=None)  # an alert's topic
    state: Mapped[str] = mapped_column(String(12), default=EditionState.SENDING)
    subject: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Articles published up to this moment are in this edition; the next starts after it.
    covers_until: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    planning_seconds: Mapped[float | None] = mapped_column(default=None)

    article_rows: Mapped[list[EditionArticle]] = relationship(
        cascade="all, delete-orphan", order_by="EditionArticle.position", lazy="selectin"
    )


class EditionArticle(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "edition_article"

    edition_id: Mapped[int] = mapped_column(
        ForeignKey("edition.id", ondelete="CASCADE"), primary_key=True
    )
    article_id: Mapped[int] = mapped_column(ForeignKey("article.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    article: Mapped[Article] = relationship(lazy="joined")


class Delivery(db.Model):  # type: ignore[name-defined,misc]
    """The ledger: one row per (edition, reader), the single truth about that send."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id", name="uq_delivery_edition_subscriber"),
        CheckConstraint(f"state IN {_among(DeliveryState)}", name="state"),
        Index("ix_delivery_edition_state_id", "edition_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("edition.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(12), default=DeliveryState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Which worker holds the row while it is "sending"/"attempting"; a fencing token, so a
    # worker whose rows were reclaimed cannot send them too.
    claim: Mapped[str | None] = mapped_column(String(32), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    message_id: Mapped[str | None] = mapped_column(String(200), default=None)


class SendWindow(db.Model):  # type: ignore[name-defined,misc]
    """The ledger rows of an edition that may go out from the same moment (DIGEST_HOUR in
    their readers' time zones), as the id range planning gave them."""

    __tablename__ = "send_window"
    # The release finds the windows whose moment has come without reading the ledger.
    __table_args__ = (Index("ix_send_window_released_at_opens_at", "released_at", "opens_at"),)

    edition_id: Mapped[int] = mapped_column(
        ForeignKey("edition.id", ondelete="CASCADE"), primary_key=True
    )
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    first_id: Mapped[int] = mapped_column(BigId)
    last_id: Mapped[int] = mapped_column(BigId)
    readers: Mapped[int] = mapped_column(Integer)
    # When its batches were queued; None while it waits.
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class BounceEvent(db.Model):  # type: ignore[name-defined,misc]
    """One bounce or complaint we acted on (or were alerted by), from a DSN or ARF report."""

    __tablename__ = "bounce_event"
    __table_args__ = (
        CheckConstraint(f"kind IN {_among(BounceKind)}", name="kind"),
        # Counting a reader's recent soft bounces is the hot query.
        Index("ix_bounce_event_subscriber_kind_received", "subscriber_id", "kind", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("delivery.id", ondelete="SET NULL"), index=True, default=None
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriber.id", ondelete="SET NULL"), default=None
    )
    kind: Mapped[str] = mapped_column(String(12))
    status: Mapped[str | None] = mapped_column(String(16), default=None)  # X.Y.Z (RFC 3463)
    diagnostic: Mapped[str] = mapped_column(String(500), default="")  # mailbox names redacted
    source: Mapped[str] = mapped_column(String(120))  # "webhook", "cli:<file>"
    # sha256 of the report's Message-ID (or bytes): the same report is never counted twice.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    # Indexed for the console's recent editions: their reports all came after them.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class SentNotice(db.Model):  # type: ignore[name-defined,misc]
    """A reader mail (confirmation link, ...) that was handed over, by the key of its task.

    A task delivered twice (a worker lost after sending, before acknowledging) finds its key
    here and sends nothing.
    """

    __tablename__ = "sent_notice"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FeedState(db.Model):  # type: ignore[name-defined,misc]
    """What the last answer of a feed's server said, so the next fetch can ask politely."""

    __tablename__ = "feed_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feed: Mapped[str] = mapped_column(String(2000), unique=True)
    etag: Mapped[str | None] = mapped_column(String(500), default=None)
    last_modified: Mapped[str | None] = mapped_column(String(100), default=None)
    # Set from a Retry-After: no request goes to the feed before this moment.
    retry_after: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Operator(db.Model):  # type: ignore[name-defined,misc]
    """A person who runs the newsletter from the console."""

    __tablename__ = "operator"
    __table_args__ = (CheckConstraint(f"role IN {_among(Role)}", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(8))
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id, with its parameters
    # Changed with the password or on removal: a session signed for an older value ends.
    session_key: Mapped[str] = mapped_column(String(32), default=new_uid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class AuditEvent(db.Model):  # type: ignore[name-defined,misc]
    """One act of an operator, an API token or the CLI: who, what, on what, when."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(400))  # "operator:ann@example.com", "api:CMS", "cli"
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(400), default="")
    ip: Mapped[str | None] = mapped_column(String(45), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ApiToken(db.Model):  # type: ignore[name-defined,misc]
    """A bearer token of the API, kept as the sha256 of its secret (shown once)."""

    __tablename__ = "api_token"
    __table_args__ = (CheckConstraint(f"scope IN {_among(Scope)}", name="scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(12))
    # The token is 32 random bytes: a fast hash is enough, unlike a password.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to tell tokens apart
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
