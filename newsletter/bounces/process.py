"""Acting on bounces and complaints: find the delivery, record the event, suppress if due.

The shell around ``bounces.parse`` (pure parsing): each message is looked up, recorded as one
BounceEvent and committed on its own. Nothing is suppressed on a guess: only a genuine VERP
address or a Message-ID we issued identifies a delivery (a report naming only a recipient
acts on nobody), and a forged VERP address makes the whole message count for nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from newsletter.bounces import parse
from newsletter.bounces.parse import Report, Unparseable
from newsletter.clock import utcnow
from newsletter.db.models import BounceEvent, BounceKind, Delivery, Subscriber
from newsletter.digests import ledger
from newsletter.extensions import db
from newsletter.mail import verp
from newsletter.readers import suppression

log = logging.getLogger(__name__)

RESULTS = (*BounceKind, "ignored", "unparseable")
DETAIL_LIMIT = 50  # listed lines per section of a summary; counts are always complete
FORGED = "a forged or tampered VERP address (bad signature)"
UNMATCHED = "no VERP address, Message-ID or subscriber of ours to match"
REPEATED = "already processed (the same report seen before)"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What processing one message did."""

    result: str  # one of RESULTS
    reason: str = ""
    status: str | None = None
    diagnostic: str = ""
    delivery_id: int | None = None
    subscriber_id: int | None = None
    suppressed: bool = False


@dataclass
class Summary:
    """Totals over many messages, for the CLI's report and the webhook's answer."""

    counts: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    unparseable: list[tuple[str, str]] = field(default_factory=list)
    policy: list[Outcome] = field(default_factory=list)
    suppressed: int = 0
    suppressed_readers: list[int] = field(default_factory=list)  # the first DETAIL_LIMIT

    @property
    def processed(self) -> int:
        return sum(self.counts.values())

    def add(self, label: str, outcome: Outcome) -> None:
        self.counts[outcome.result] += 1
        self.suppressed += outcome.suppressed
        listed = len(self.suppressed_readers) < DETAIL_LIMIT
        if outcome.suppressed and outcome.subscriber_id is not None and listed:
            self.suppressed_readers.append(outcome.subscriber_id)
        if outcome.result == "ignored":
            known = outcome.reason in self.ignored or len(self.ignored) < DETAIL_LIMIT
            key = outcome.reason if known else "other reasons"
            self.ignored[key] += 1
        elif outcome.result == "unparseable" and len(self.unparseable) < DETAIL_LIMIT:
            self.unparseable.append((label, outcome.reason))
        elif outcome.result == "policy" and len(self.policy) < DETAIL_LIMIT:
            self.policy.append(outcome)

    def as_dict(self) -> dict[str, Any]:
        return {
            "processed": self.processed,
            "hard": self.counts["hard"],
            "soft": self.counts["soft"],
            "policy": self.counts["policy"],
            "complaints": self.counts["complaint"],
            "ignored": self.counts["ignored"],
            "unparseable": self.counts["unparseable"],
            "suppressed": self.suppressed,
            "ignored_reasons": dict(self.ignored.most_common()),
            "unparseable_reasons": [reason for _, reason in self.unparseable],
            "policy_alerts": [
                {
                    "status": item.status,
                    "delivery_id": item.delivery_id,
                    "diagnostic": item.diagnostic,
                }
                for item in self.policy
            ],
        }

    def suppressed_addresses(self) -> list[str]:
        """The suppressed readers' addresses, in the order their reports came."""
        if not self.suppressed_readers:
            return []
        found = dict(
            db.session.execute(
                select(Subscriber.id, Subscriber.email).where(
                    Subscriber.id.in_(self.suppressed_readers)
                )
            ).all()
        )
        return [found[key] for key in self.suppressed_readers if key in found]


def process_message(raw: bytes, source: str, *, now: datetime | None = None) -> Outcome:
    """Parse, identify, record and apply one message; commits, never raises on bad input."""
    outcome = _process(raw, source, now or utcnow())
    if outcome.result in ("ignored", "unparseable"):
        db.session.rollback()  # only reads happened; end the transaction and its locks
    return outcome


def _process(raw: bytes, source: str, now: datetime) -> Outcome:
    try:
        report = parse.parse(raw)
    except Unparseable as exc:
        return Outcome("unparseable", exc.reason)
    verdict = parse.verdict(report)
    if verdict.kind is None:
        return Outcome("ignored", verdict.reason)
    target = identify(report)
    if isinstance(target, str):
        return Outcome("ignored", target)
    delivery_id, subscriber_id = target
    event = BounceEvent(
        delivery_id=delivery_id,
        subscriber_id=subscriber_id,
        kind=verdict.kind.value,
        status=verdict.status,
        diagnostic=verdict.diagnostic,
        source=parse.clean(source, 120),
        fingerprint=fingerprint(report, raw, delivery_id, subscriber_id),
        received_at=now,
    )
    if db.session.scalar(
        select(BounceEvent.id).where(BounceEvent.fingerprint == event.fingerprint)
    ):
        return Outcome("ignored", REPEATED)
    try:
        with db.session.begin_nested():
            db.session.add(event)
    except IntegrityError:
        return Outcome("ignored", REPEATED)  # the same report, recorded at the same moment
    suppressed = _apply(verdict.kind, subscriber_id, delivery_id, event, source, now)
    db.session.commit()
    return Outcome(
        verdict.kind.value,
        status=verdict.status,
        diagnostic=verdict.diagnostic,
        delivery_id=delivery_id,
        subscriber_id=subscriber_id,
        suppressed=suppressed,
    )


def fingerprint(
    report: Report, raw: bytes, delivery_id: int | None, subscriber_id: int | None
) -> str:
    """A report's identity: its own Message-ID (or its bytes) and whom it is about."""
    about = f"{delivery_id}/{subscriber_id}".encode()
    if report.message_id:
        own = b"mid:" + report.message_id.encode("utf-8", "replace")
    else:
        own = b"raw:" + hashlib.sha256(raw.replace(b"\r\n", b"\n").strip()).digest()
    return hashlib.sha256(own + b"|" + about).hexdigest()


def identify(report: Report) -> tuple[int | None, int | None] | str:
    """(delivery id, subscriber id) a report is about, or the reason it names nobody."""
    ids: set[int] = set()
    for candidate in report.verp_candidates:
        if not verp.looks_like(candidate):
            continue
        found = verp.parse(candidate)
        if found is None:
            # Whoever made this up may also have copied a real Message-ID: trust nothing.
            return FORGED
        ids.add(found)
    if len(ids) > 1:
        return "VERP addresses naming different deliveries"
    if ids:
        delivery = db.session.get(Delivery, ids.pop())
        if delivery is None:
            return "the delivery it names no longer exists"
        return delivery.id, delivery.subscriber_id
    if report.original_message_id:
        found_delivery = ledger.by_message_id(report.original_message_id)
        if found_delivery is not None:
            return found_delivery.id, found_delivery.subscriber_id
    # A report naming only a recipient (Original-Rcpt-To) identifies no delivery of ours:
    # anybody can write one about any address, so it acts on nobody.
    return UNMATCHED


def _apply(
    kind: BounceKind,
    subscriber_id: int | None,
    delivery_id: int | None,
    event: BounceEvent,
    source: str,
    now: datetime,
) -> bool:
    """Suppress the reader if this event calls for it; True when it did."""
    if kind is BounceKind.POLICY:
        log.warning(
            "policy rejection %s for delivery %s (not suppressed): %s",
            event.status,
            delivery_id,
            event.diagnostic,
        )
        return False
    if subscriber_id is None:
        return False
    if kind is BounceKind.SOFT:
        window = timedelta(days=float(current_app.config["SOFT_BOUNCE_WINDOW_DAYS"]))
        limit = int(current_app.config["SOFT_BOUNCE_LIMIT"])
        # Distinct deliveries: two copies of one message's bounce are one soft bounce.
        recent = db.session.scalar(
            select(func.count(func.distinct(BounceEvent.delivery_id))).where(
                BounceEvent.subscriber_id == subscriber_id,
                BounceEvent.kind == BounceKind.SOFT,
                BounceEvent.received_at > now - window,
                BounceEvent.received_at <= now,
            )
        )
        if int(recent or 0) < limit:
            return False
        log.info("subscriber %s: %s soft bounces in %s, suppressed", subscriber_id, recent, window)
    why = suppression.COMPLAINED if kind is BounceKind.COMPLAINT else suppression.BOUNCED
    changed: int = suppression.suppress_readers([subscriber_id], why, source, event.diagnostic)
    return changed > 0


def bounce_counts(edition_id: int) -> dict[str, int]:
    """Bounce events of an edition's deliveries by kind (hard, soft, policy, complaint)."""
    return bounce_counts_of([edition_id]).get(edition_id, {})


def bounce_counts_of(
    edition_ids: Sequence[int], since: datetime | None = None
) -> dict[int, dict[str, int]]:
    """Bounce events of each of these editions' deliveries by kind, in one statement.

    ``since`` (the oldest edition's creation: no report about a mail comes before it) lets
    the statement read only recent reports, through their index on received_at, instead of
    every row of the editions in the ledger.
    """
    found: dict[int, dict[str, int]] = {edition_id: {} for edition_id in edition_ids}
    if not edition_ids:
        return found
    query = (
        select(Delivery.edition_id, BounceEvent.kind, func.count())
        .join(Delivery, Delivery.id == BounceEvent.delivery_id)
        .group_by(Delivery.edition_id, BounceEvent.kind)
    )
    if since is None:
        query = query.where(Delivery.edition_id.in_(edition_ids))
    else:
        # As an expression, so that SQLite's planner (without statistics) starts from the
        # recent reports rather than from the editions' rows, which are many more.
        query = query.where(
            BounceEvent.received_at >= since, (Delivery.edition_id + 0).in_(edition_ids)
        )
    for edition_id, kind, number in db.session.execute(query):
        found[edition_id][kind] = int(number)
    return found


def edition_events(edition_id: int, limit: int = 50) -> list[BounceEvent]:
    """The newest bounce events and complaints about an edition's deliveries."""
    return list(
        db.session.scalars(
            select(BounceEvent)
            .join(Delivery, Delivery.id == BounceEvent.delivery_id)
            .where(Delivery.edition_id == edition_id)
            .order_by(BounceEvent.id.desc())
            .limit(limit)
        )
    )
