"""The delivery ledger: every statement that reads or moves an edition's rows.

A row moves queued -> attempting (claimed by one batch, a chunk at a time, and committed
before any of that chunk goes to the server) -> sent | failed | skipped | queued (retry
later). Only "attempting" rows can have reached the server without us knowing: if their
worker dies, recovery marks them "unknown" instead of sending them again. ("sending" marks
rows claimed but not yet handed over by earlier versions; recovery queues them again.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from flask import current_app
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Integer,
    Select,
    Update,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)

from newsletter.clock import utcnow
from newsletter.db.dialect import in_param, on_postgresql
from newsletter.db.models import Delivery, Edition, Subscriber, SubscriberTopic, Suppression
from newsletter.digests.compose import Reader
from newsletter.extensions import db
from newsletter.readers import suppression
from newsletter.readers.addresses import address_hash

UNFINISHED = ("queued", "sending", "attempting")


UNKNOWN_REASON = (
    "the worker stopped while this message was being handed to the server; "
    "it may or may not have been accepted, so it is not sent again"
)


Facts = dict[int, tuple[int, str, Reader | None]]


@cache
def _claiming(postgresql: bool) -> Update:
    """Take up to :limit due, queued rows of the id range :first-:last as "attempting".

    Parameters: edition, first, last, limit, now, token.
    """
    table = Delivery.__table__
    now = bindparam("now", type_=table.c.claimed_at.type)
    due = (
        select(table.c.id)
        .where(
            table.c.edition_id == bindparam("edition"),
            table.c.id.between(bindparam("first"), bindparam("last")),
            table.c.state == "queued",
            or_(table.c.not_before.is_(None), table.c.not_before <= now),
        )
        .order_by(table.c.id)
        .limit(bindparam("limit", type_=Integer))
        # PostgreSQL: rows another worker is claiming are skipped, not waited for.
        # SQLite has no row locks; its single writer makes the UPDATE below atomic.
        .with_for_update(skip_locked=True)
        # Evaluated once: a subquery the planner re-ran per row would lock (and claim) past
        # the LIMIT, each run skipping the rows the previous runs had just updated.
        .cte("due")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    if postgresql:
        # A join, so each claimed row is found through the primary key. With ``id IN (SELECT
        # ...)`` and the fresh edition's statistics not yet gathered, the planner compared
        # every queued row of the range with every claimed id: 5-8 ms a chunk, more than
        # everything else the server did for those messages.
        chosen: ColumnElement[bool] = table.c.id == due.c.id
    else:
        # SQLite before 3.33 has no UPDATE ... FROM; its IN (SELECT) runs the CTE once.
        chosen = table.c.id.in_(select(due.c.id))
    return (
        update(table)
        .where(chosen, table.c.state == "queued")
        .values(state="attempting", claim=bindparam("token"), claimed_at=now)
    )


@cache
def _claim_ids(postgresql: bool) -> Update:
    return _claiming(postgresql).returning(Delivery.__table__.c.id)


@cache
def _take(postgresql: bool) -> Select[Any]:
    table = Delivery.__table__
    claimed = (
        _claiming(postgresql)
        .returning(table.c.id, table.c.attempts, table.c.subscriber_id, table.c.message_id)
        .cte("claimed")
    )
    return _reading(claimed)


@cache
def _readers(postgresql: bool) -> Select[Any]:
    deliveries = Delivery.__table__
    return _reading(deliveries).where(in_param(deliveries.c.id, "ids", postgresql))


@cache
def _suppressed(postgresql: bool) -> Select[Any]:
    suppressions = Suppression.__table__
    return select(suppressions.c.address_hash).where(
        in_param(suppressions.c.address_hash, "hashes", postgresql)
    )


def _reading(deliveries: Any) -> Select[Any]:
    """Ledger rows with their reader, one row per topic (a reader without one: one row)."""
    subscribers, topics = Subscriber.__table__, SubscriberTopic.__table__
    return (
        select(
            deliveries.c.id,
            deliveries.c.attempts,
            subscribers.c.id,
            subscribers.c.uid,
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.status,
            deliveries.c.message_id,
            topics.c.topic,
        )
        .select_from(deliveries)
        # Outer: a claimed row must come back even without its reader, to be recorded.
        .outerjoin(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .outerjoin(topics, topics.c.subscriber_id == subscribers.c.id)
        .order_by(deliveries.c.id)
    )


def claim(
    edition_id: int, first_id: int, last_id: int, token: str, limit: int, now: datetime
) -> list[int]:
    """Take up to ``limit`` due, queued rows of an id range as "attempting" (uncommitted).

    Concurrent batches skip each other's rows. Claiming a chunk and journalling it are one
    row update: the caller commits before handing any of the chunk to the server.
    """
    params = _claim_params(edition_id, first_id, last_id, token, limit, now)
    return sorted(db.session.scalars(_claim_ids(on_postgresql()), params).all())


def _claim_params(
    edition_id: int, first_id: int, last_id: int, token: str, limit: int, now: datetime
) -> dict[str, Any]:
    return {
        "edition": edition_id,
        "first": first_id,
        "last": last_id,
        "token": token,
        "limit": limit,
        "now": now,
    }


def take(
    edition_id: int, first_id: int, last_id: int, token: str, limit: int, now: datetime
) -> Facts:
    """``claim`` a chunk and read what sending it needs (``readers``), in id order.

    On PostgreSQL that is one statement, the claim's UPDATE ... RETURNING joined with the
    readers and their topics: one round trip a chunk instead of three.
    """
    if not on_postgresql():
        return readers(claim(edition_id, first_id, last_id, token, limit, now))
    params = _claim_params(edition_id, first_id, last_id, token, limit, now)
    return _facts(db.session.execute(_take(True), params).all())


def readers(ids: Sequence[int]) -> Facts:
    """For each claimed row: attempts so far, a reason to skip (or ""), and the reader."""
    if not ids:
        return {}
    return _facts(db.session.execute(_readers(on_postgresql()), {"ids": list(ids)}).all())


def _facts(rows: Sequence[Any]) -> Facts:
    """Readers from ``_reading``'s rows, each checked against the suppression list."""
    topics: dict[int, set[str]] = {}
    for row in rows:
        if row[8] is not None:
            topics.setdefault(row[0], set()).add(row[8])
    firsts = {row[0]: row for row in rows}  # one row per ledger row, in id order
    hashes = {delivery_id: address_hash(row[4]) for delivery_id, row in firsts.items() if row[4]}
    suppressed = set(
        db.session.scalars(_suppressed(on_postgresql()), {"hashes": list(hashes.values())})
    )
    found: Facts = {}
    for delivery_id, row in firsts.items():
        _, attempts, subscriber_id, uid, email, name, status, message_id, _ = row
        # Checked now, at send time: an unsubscribe after planning must win.
        if subscriber_id is None:
            found[delivery_id] = (attempts, "the reader no longer exists", None)
        elif status != "active":
            found[delivery_id] = (attempts, f"subscriber is {status}", None)
        elif hashes[delivery_id] in suppressed:
            found[delivery_id] = (attempts, "address is suppressed", None)
        else:
            reader = Reader(
                subscriber_id,
                uid,
                email,
                name,
                frozenset(topics.get(delivery_id, ())),
                message_id or "",
                delivery_id,
            )
            found[delivery_id] = (attempts, "", reader)
    return found


def record(token: str, outcomes: dict[str, list[dict[str, Any]]]) -> None:
    """Write a chunk's outcomes (in the caller's transaction), fenced by the claim."""
    table = Delivery.__table__
    fenced = and_(
        table.c.id == bindparam("did"),
        table.c.claim == token,
        # "unknown" too: if recovery gave up on a slow but live worker, its answer still wins.
        # (spelled out: executemany cannot expand an IN list)
        or_(table.c.state == "attempting", table.c.state == "unknown"),
    )
    done: dict[str, Any] = {"claim": None, "claimed_at": None}
    tried = {**done, "attempts": table.c.attempts + 1}
    sent = outcomes.get("sent")
    if sent:
        # The common case is one statement per chunk, not one per message.
        db.session.execute(
            _record_sent(on_postgresql()),
            {"ids": [item["did"] for item in sent], "token": token, "at": utcnow()},
        )
    statements = {
        "failed": {"state": "failed", "last_error": bindparam("error"), **tried},
        "retry": {
            "state": "queued",
            "last_error": bindparam("error"),
            "not_before": bindparam("at"),
            **tried,
        },
        "skipped": {"state": "skipped", "last_error": bindparam("error"), **done},
        "release": {"state": "queued", "not_before": bindparam("at"), **done},
    }
    for kind, values in statements.items():
        params = outcomes.get(kind)
        if params:
            db.session.execute(update(table).where(fenced).values(**values), params)
    bounced = outcomes.get("bounced")
    if bounced:
        suppression.suppress_readers([item["sid"] for item in bounced], suppression.BOUNCED, "smtp")


@cache
def _record_sent(postgresql: bool) -> Update:
    """Parameters: ids, token, at."""
    table = Delivery.__table__
    return (
        update(table)
        .where(
            in_param(table.c.id, "ids", postgresql),
            table.c.claim == bindparam("token"),
            table.c.state.in_(("attempting", "unknown")),
        )
        .values(
            state="sent",
            sent_at=bindparam("at", type_=table.c.sent_at.type),
            attempts=table.c.attempts + 1,
            claim=None,
            claimed_at=None,
        )
    )


def release_rest(edition_id: int, first_id: int, last_id: int, due: datetime | None) -> None:
    """After a stop, the range's rows still queued wait for the batch's retry."""
    if due is None:
        return
    db.session.execute(
        update(Delivery)
        .where(
            Delivery.edition_id == edition_id,
            Delivery.id.between(first_id, last_id),
            Delivery.state == "queued",
            or_(Delivery.not_before.is_(None), Delivery.not_before < due),
        )
        .values(not_before=due),
        execution_options={"synchronize_session": False},
    )


def finish_if_done(edition_id: int) -> bool:
    """Mark the edition done once no row is left to send."""
    left = db.session.scalar(
        select(exists().where(Delivery.edition_id == edition_id, Delivery.state.in_(UNFINISHED)))
    )
    if left:
        return False
    db.session.execute(
        update(Edition)
        .where(Edition.id == edition_id, Edition.state == "sending")
        .values(state="done", finished_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    return True


def batches(edition_id: int, size: int) -> list[tuple[int, int]]:
    """Id ranges covering the edition's unfinished rows, about ``size`` rows each."""
    low, high = db.session.execute(
        select(func.min(Delivery.id), func.max(Delivery.id)).where(
            Delivery.edition_id == edition_id, Delivery.state == "queued"
        )
    ).one()
    if low is None:
        return []
    return [(start, min(start + size - 1, high)) for start in range(low, high + 1, size)]


def recover(lease_seconds: float | None = None) -> dict[str, int]:
    """Reclaim rows whose worker vanished: never-sent ones are queued, in-flight ones unknown."""
    lease = float(
        lease_seconds if lease_seconds is not None else current_app.config["LEASE_SECONDS"]
    )
    stale = utcnow() - timedelta(seconds=lease)
    # Only editions still being sent can hold such rows: with the edition named, the
    # (edition, state, id) index finds them instead of a scan of every edition ever sent.
    sending = select(Edition.id).where(Edition.state == "sending").scalar_subquery()
    requeued = _changed(
        update(Delivery)
        .where(
            Delivery.edition_id.in_(sending),
            Delivery.state == "sending",
            Delivery.claimed_at < stale,
        )
        .values(state="queued", claim=None, claimed_at=None)
    )
    unknown = _changed(
        update(Delivery)
        .where(
            Delivery.edition_id.in_(sending),
            Delivery.state == "attempting",
            Delivery.claimed_at < stale,
        )
        .values(state="unknown", last_error=UNKNOWN_REASON)
    )
    db.session.commit()
    return {"requeued": requeued, "unknown": unknown}


def sending_editions() -> list[int]:
    """The editions still being sent."""
    return list(db.session.scalars(select(Edition.id).where(Edition.state == "sending")))


def _changed(statement: Update) -> int:
    """Run a bulk UPDATE and return how many rows it changed."""
    result = cast(
        "CursorResult[Any]",
        db.session.execute(statement, execution_options={"synchronize_session": False}),
    )
    return int(result.rowcount or 0)
