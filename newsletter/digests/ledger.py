"""The delivery ledger: every statement that reads or moves an edition's rows.

A row moves queued -> attempting (claimed by one batch, a chunk at a time, and committed
before any of that chunk goes to the server) -> sent | failed | skipped | queued (retry
later). Only "attempting" rows can have reached the server without us knowing: if their
worker dies, recovery marks them "unknown" instead of sending them again. ("sending" marks
rows claimed but not yet handed over by earlier versions; recovery queues them again.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple, cast

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
from newsletter.db.models import (
    Delivery,
    DeliveryState,
    Edition,
    EditionState,
    Status,
    Subscriber,
    SubscriberTopic,
    Suppression,
)
from newsletter.digests.compose import Reader, parse_message_id
from newsletter.digests.journal import Orphan
from newsletter.digests.windows import Opened
from newsletter.extensions import db
from newsletter.readers import suppression
from newsletter.readers.addresses import address_hash

UNFINISHED = (DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.ATTEMPTING)
# Rows no worker will touch again.
FINISHED = (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.SKIPPED, DeliveryState.UNKNOWN)


UNKNOWN_REASON = (
    "the worker stopped while this message was being handed to the server; "
    "it may or may not have been accepted, so it is not sent again"
)
IN_FLIGHT_REASON = (
    "the worker stopped while this message was on the wire (its journal says it was being "
    "handed to the server, and no reply was recorded); it may or may not have been accepted, "
    "so it is not sent again"
)
REOFFERED = "re-offered by an operator after review"


class Claimed(NamedTuple):
    """A claimed ledger row: its attempts so far, and its reader or why it is skipped."""

    attempts: int
    reader: Reader | None
    skip_reason: str = ""


Facts = dict[int, Claimed]


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
            table.c.state == DeliveryState.QUEUED,
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
        .where(chosen, table.c.state == DeliveryState.QUEUED)
        .values(state=DeliveryState.ATTEMPTING, claim=bindparam("token"), claimed_at=now)
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
            deliveries.c.id.label("delivery_id"),
            deliveries.c.attempts,
            subscribers.c.id.label("subscriber_id"),
            subscribers.c.uid,
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.status,
            subscribers.c.language,
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
        if row.topic is not None:
            topics.setdefault(row.delivery_id, set()).add(row.topic)
    firsts = {row.delivery_id: row for row in rows}  # one row per ledger row, in id order
    hashes = {key: address_hash(row.email) for key, row in firsts.items() if row.email}
    suppressed = set(
        db.session.scalars(_suppressed(on_postgresql()), {"hashes": list(hashes.values())})
    )
    found: Facts = {}
    for delivery_id, row in firsts.items():
        # Checked now, at send time: an unsubscribe after planning must win.
        if row.subscriber_id is None:
            found[delivery_id] = Claimed(row.attempts, None, "the reader no longer exists")
        elif row.status != Status.ACTIVE:
            found[delivery_id] = Claimed(row.attempts, None, f"subscriber is {row.status}")
        elif hashes[delivery_id] in suppressed:
            found[delivery_id] = Claimed(row.attempts, None, "address is suppressed")
        else:
            reader = Reader(
                row.subscriber_id,
                row.uid,
                row.email,
                row.name,
                frozenset(topics.get(delivery_id, ())),
                row.message_id or "",
                delivery_id,
                row.language,
            )
            found[delivery_id] = Claimed(row.attempts, reader)
    return found


@dataclass
class Outcomes:
    """A chunk's outcomes, grouped by the ledger update each needs."""

    sent: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # delivery, error
    retry: list[tuple[int, str, datetime]] = field(default_factory=list)  # ..., not before
    skipped: list[tuple[int, str]] = field(default_factory=list)  # delivery, reason
    # Sent whole, reply lost (RFC 1047): the server may have it; never sent again unasked.
    unknown: list[tuple[int, str]] = field(default_factory=list)  # delivery, reason
    # Back to the queue with no attempt counted: the content never reached the server.
    release: list[tuple[int, datetime | None]] = field(default_factory=list)
    bounced: list[int] = field(default_factory=list)  # readers whose address got a 5xx


def record(token: str, outcomes: Outcomes) -> None:
    """Write a chunk's outcomes (in the caller's transaction), fenced by the claim."""
    table = Delivery.__table__
    fenced = and_(
        table.c.id == bindparam("did"),
        table.c.claim == token,
        # "unknown" too: if recovery gave up on a slow but live worker, its answer still wins.
        # (spelled out: executemany cannot expand an IN list)
        or_(table.c.state == DeliveryState.ATTEMPTING, table.c.state == DeliveryState.UNKNOWN),
    )
    done: dict[str, Any] = {"claim": None, "claimed_at": None}
    tried = {**done, "attempts": table.c.attempts + 1}
    if outcomes.sent:
        # The common case is one statement per chunk, not one per message.
        db.session.execute(
            _record_sent(on_postgresql()), {"ids": outcomes.sent, "token": token, "at": utcnow()}
        )
    changes: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
        (
            {"state": DeliveryState.FAILED, "last_error": bindparam("error"), **tried},
            [{"did": did, "error": error} for did, error in outcomes.failed],
        ),
        (
            {
                "state": DeliveryState.QUEUED,
                "last_error": bindparam("error"),
                "not_before": bindparam("at"),
                **tried,
            },
            [{"did": did, "error": error, "at": at} for did, error, at in outcomes.retry],
        ),
        (
            {"state": DeliveryState.SKIPPED, "last_error": bindparam("error"), **done},
            [{"did": did, "error": reason} for did, reason in outcomes.skipped],
        ),
        (
            {"state": DeliveryState.UNKNOWN, "last_error": bindparam("error"), **tried},
            [{"did": did, "error": reason} for did, reason in outcomes.unknown],
        ),
        (
            {"state": DeliveryState.QUEUED, "not_before": bindparam("at"), **done},
            [{"did": did, "at": at} for did, at in outcomes.release],
        ),
    ]
    for values, params in changes:
        if params:
            db.session.execute(update(table).where(fenced).values(**values), params)
    if outcomes.bounced:
        suppression.suppress_readers(outcomes.bounced, suppression.BOUNCED, "smtp")


@cache
def _record_sent(postgresql: bool) -> Update:
    """Parameters: ids, token, at."""
    table = Delivery.__table__
    return (
        update(table)
        .where(
            in_param(table.c.id, "ids", postgresql),
            table.c.claim == bindparam("token"),
            table.c.state.in_((DeliveryState.ATTEMPTING, DeliveryState.UNKNOWN)),
        )
        .values(
            state=DeliveryState.SENT,
            sent_at=bindparam("at", type_=table.c.sent_at.type),
            attempts=table.c.attempts + 1,
            claim=None,
            claimed_at=None,
        )
    )


JOURNAL_LOST = (
    "the machine stopped while this message's batch was running, and its journal may have "
    "lost its last lines; it may or may not have been accepted, so it is not sent again"
)


def replay(said: Orphan) -> dict[str, int]:
    """Apply a dead batch's journal to the rows its claim still holds (uncommitted).

    Accepted messages are sent; refused ones failed (a 5xx suppresses the address, as when
    the reply was read live); deferred ones wait for their retry; ones on the wire when it
    died are unknown; the rest never left and go back to the queue, no attempt counted (or
    unknown, when the journal may be incomplete). Rows the batch recorded before it died,
    or that another run took since, no longer carry its claim and are left alone.
    """
    table = Delivery.__table__
    held: dict[int, int | None] = dict(
        db.session.execute(
            select(table.c.id, table.c.subscriber_id).where(
                table.c.claim == said.token,
                table.c.edition_id == said.edition_id,
                table.c.state.in_((DeliveryState.ATTEMPTING, DeliveryState.UNKNOWN)),
            )
        ).all()
    )
    sent = {did: at for did, at in said.accepted.items() if did in held}
    failed = {did: code for did, code in said.failed.items() if did in held and did not in sent}
    deferred = {
        did: code
        for did, code in said.deferred.items()
        if did in held.keys() - sent.keys() - failed.keys()
    }
    decided = sent.keys() | failed.keys() | deferred.keys()
    unknown = (said.in_flight() & held.keys()) - decided
    rest = held.keys() - decided - unknown
    retry_at = said.retry_at or utcnow() + timedelta(
        seconds=float(current_app.config["RETRY_BASE_SECONDS"])
    )
    outcomes = Outcomes(
        failed=[
            (did, f"refused with {code or 'no code'}; {_LOST_TEXT}") for did, code in failed.items()
        ],
        retry=[
            (did, f"deferred with {code or 'no code'}; {_LOST_TEXT}", retry_at)
            for did, code in deferred.items()
        ],
        unknown=[(did, IN_FLIGHT_REASON) for did in sorted(unknown)],
        bounced=[
            subscriber
            for did, code in failed.items()
            if code >= 500 and (subscriber := held[did]) is not None
        ],
    )
    if not said.same_boot:
        outcomes.unknown += [(did, JOURNAL_LOST) for did in sorted(rest)]
    elif said.retry_at is not None:
        # The batch gave up on an error: its rest counts an attempt and waits, so an error
        # that comes back every time backs off instead of spinning.
        outcomes.retry += [(did, said.reason[:500], said.retry_at) for did in sorted(rest)]
    else:
        outcomes.release += [(did, None) for did in sorted(rest)]
    record(said.token, outcomes)
    if sent:
        fenced = and_(table.c.id == bindparam("did"), table.c.claim == said.token)
        db.session.execute(
            update(table)
            .where(fenced)
            .values(
                state=DeliveryState.SENT,
                sent_at=bindparam("at"),
                attempts=table.c.attempts + 1,
                claim=None,
                claimed_at=None,
                last_error=None,
            ),
            [{"did": did, "at": datetime.fromtimestamp(at, UTC)} for did, at in sent.items()],
        )
    queued = len(outcomes.release) + len(outcomes.retry)
    if queued:
        reopen(said.edition_id)
    return {
        "sent": len(sent),
        "failed": len(failed),
        "unknown": len(outcomes.unknown),
        "requeued": queued,
    }


_LOST_TEXT = "the reply's text was lost with the worker"


def reopen(edition_id: int) -> None:
    """An edition marked done gets rows to send again: it is being sent once more."""
    db.session.execute(
        update(Edition)
        .where(Edition.id == edition_id, Edition.state == EditionState.DONE)
        .values(state=EditionState.SENDING, finished_at=None),
        execution_options={"synchronize_session": False},
    )


def unknowns(edition_id: int, limit: int | None = None) -> list[tuple[int, str, str]]:
    """The edition's rows whose outcome is unknown: (delivery, address, reason), by id."""
    query = (
        select(Delivery.id, Subscriber.email, Delivery.last_error)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.edition_id == edition_id, Delivery.state == DeliveryState.UNKNOWN)
        .order_by(Delivery.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [(did, email, reason or "") for did, email, reason in db.session.execute(query)]


def message_ids(delivery_ids: Sequence[int]) -> dict[int, str]:
    """The Message-ID each of these deliveries carried."""
    if not delivery_ids:
        return {}
    rows = db.session.execute(
        select(Delivery.id, Delivery.message_id).where(Delivery.id.in_(list(delivery_ids)))
    )
    return {did: mid or "" for did, mid in rows}


def reoffer(edition_id: int, addresses: Sequence[str] | None = None) -> int:
    """Queue the edition's unknown rows again (all, or those of these addresses), uncommitted.

    The operator's call after checking the relay's log: only for messages the relay never
    kept, or a reader gets a second copy. Suppression and unsubscribes are checked again
    when they are sent.
    """
    table = Delivery.__table__
    # A row recovery made unknown while its batch still runs (slow, not dead) is left to
    # that batch: its answer may yet come.
    live = utcnow() - timedelta(seconds=float(current_app.config["LEASE_SECONDS"]))
    query = update(table).where(
        table.c.edition_id == edition_id,
        table.c.state == DeliveryState.UNKNOWN,
        or_(table.c.claim.is_(None), table.c.claimed_at.is_(None), table.c.claimed_at < live),
    )
    if addresses is not None:
        wanted = select(Subscriber.id).where(Subscriber.email.in_(list(addresses)))
        query = query.where(table.c.subscriber_id.in_(wanted))
    changed = _changed(
        query.values(
            state=DeliveryState.QUEUED,
            claim=None,
            claimed_at=None,
            not_before=None,
            last_error=REOFFERED,
        )
    )
    if changed:
        reopen(edition_id)
    return changed


def release_rest(edition_id: int, first_id: int, last_id: int, due: datetime | None) -> None:
    """After a stop, the range's rows still queued wait for the batch's retry."""
    if due is None:
        return
    db.session.execute(
        update(Delivery)
        .where(
            Delivery.edition_id == edition_id,
            Delivery.id.between(first_id, last_id),
            Delivery.state == DeliveryState.QUEUED,
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
        .where(Edition.id == edition_id, Edition.state == EditionState.SENDING)
        .values(state=EditionState.DONE, finished_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    return True


def batches(
    edition_id: int, size: int, within: tuple[int, int] | None = None
) -> list[tuple[int, int]]:
    """Id ranges covering the edition's unfinished rows (those ``within`` an id range, first
    and last included, when given), about ``size`` rows each."""
    query = select(func.min(Delivery.id), func.max(Delivery.id)).where(
        Delivery.edition_id == edition_id, Delivery.state == DeliveryState.QUEUED
    )
    if within is not None:
        query = query.where(Delivery.id.between(*within))
    low, high = db.session.execute(query).one()
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
    sending = select(Edition.id).where(Edition.state == EditionState.SENDING).scalar_subquery()
    requeued = _changed(
        update(Delivery)
        .where(
            Delivery.edition_id.in_(sending),
            Delivery.state == DeliveryState.SENDING,
            Delivery.claimed_at < stale,
        )
        .values(state=DeliveryState.QUEUED, claim=None, claimed_at=None)
    )
    unknown = _changed(
        update(Delivery)
        .where(
            Delivery.edition_id.in_(sending),
            Delivery.state == DeliveryState.ATTEMPTING,
            Delivery.claimed_at < stale,
        )
        .values(state=DeliveryState.UNKNOWN, last_error=UNKNOWN_REASON)
    )
    db.session.commit()
    return {"requeued": requeued, "unknown": unknown}


def unattended(
    edition_id: int,
    size: int,
    stale: datetime,
    *,
    queue_idle: bool,
    opened: Opened | None = None,
) -> list[tuple[int, int]]:
    """Id ranges of the edition's queued rows that no task will take, for recovery to queue.

    A row whose retry was due before ``stale`` has lost its task (it is made due from now,
    so it is queued once per lease at most). And when the broker's
    queue is idle, an edition with due rows that nobody has held since ``stale`` has lost
    them all (a broker restart, a task thrown away): then every range it has left. An
    edition being sent normally gets nothing, however many of its ranges wait their turn.

    ``opened``: the edition's send windows (``windows.opened``). Rows of a window still
    closed wait for their readers' hour, not for a lost task, and are left alone (they lie
    beyond ``opened.through``, so they are not even read); a row whose ``not_before`` is
    still its window's opening is as untried as a fresh edition's row.
    """
    now = utcnow()
    due = or_(Delivery.not_before.is_(None), Delivery.not_before <= now)
    mine = Delivery.edition_id == edition_id
    through = None
    if opened is not None:
        through = (0, opened.through)
        mine = and_(mine, Delivery.id <= opened.through)
    if queue_idle:
        edition = db.session.get(Edition, edition_id)
        held = exists().where(
            mine,
            Delivery.state.in_((DeliveryState.SENDING, DeliveryState.ATTEMPTING)),
            Delivery.claimed_at >= stale,
        )
        waiting = exists().where(mine, Delivery.state == DeliveryState.QUEUED, due)
        if (
            edition is not None
            and edition.created_at < stale
            and db.session.scalar(select(waiting & ~held))
        ):
            return batches(edition_id, size, through)
    lost = and_(mine, Delivery.state == DeliveryState.QUEUED, Delivery.not_before < stale)
    if opened is not None:
        lost = and_(lost, Delivery.not_before.not_in(opened.openings))
    overdue = db.session.execute(
        select(func.min(Delivery.id), func.max(Delivery.id))
        .where(lost)
        .group_by(Delivery.id // size)
        .order_by(func.min(Delivery.id))
    ).all()
    if overdue:
        # Due from now: if the task queued for them waits behind others, the next passes
        # leave them alone until a lease has gone by again.
        _changed(update(Delivery).where(lost).values(not_before=now))
    return [(first, last) for first, last in overdue]


def counts(edition_id: int) -> dict[str, int]:
    """Deliveries of an edition by state."""
    return counts_of([edition_id]).get(edition_id, {})


def counts_of(edition_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Deliveries of each of these editions by state, in one statement."""
    found: dict[int, dict[str, int]] = {edition_id: {} for edition_id in edition_ids}
    if not edition_ids:
        return found
    rows = db.session.execute(
        select(Delivery.edition_id, Delivery.state, func.count())
        .where(Delivery.edition_id.in_(edition_ids))
        .group_by(Delivery.edition_id, Delivery.state)
    )
    for edition_id, state, number in rows:
        found[edition_id][state] = int(number)
    return found


def unsubscribed_between(edition_id: int, start: datetime, end: datetime | None) -> int:
    """Readers this edition was sent to whose latest unsubscribe falls in [start, end).

    Read from the few readers who unsubscribed in the window (an index on unsubscribed_at),
    each looked up in this edition's rows (the unique index), never from the edition's
    million rows. The state is compared as an expression so that no planner (SQLite's,
    without statistics) prefers the index on (edition, state), which holds them all.
    """
    left = select(Subscriber.id).where(Subscriber.unsubscribed_at >= start)
    if end is not None:
        left = left.where(Subscriber.unsubscribed_at < end)
    query = select(func.count()).where(
        Delivery.edition_id == edition_id,
        Delivery.subscriber_id.in_(left.scalar_subquery()),
        func.lower(Delivery.state) == DeliveryState.SENT,
    )
    return int(db.session.scalar(query) or 0)


class ReaderDelivery(NamedTuple):
    """One of a reader's deliveries, with its edition's subject and kind."""

    edition_id: int
    subject: str
    kind: str
    created_at: datetime
    state: str
    attempts: int
    sent_at: datetime | None
    last_error: str | None


def of_reader(
    subscriber_id: int, before_edition: int | None = None, limit: int = 50
) -> list[ReaderDelivery]:
    """A reader's deliveries, newest edition first, ``limit`` at a time."""
    query = (
        select(
            Delivery.edition_id,
            Edition.subject,
            Edition.kind,
            Edition.created_at,
            Delivery.state,
            Delivery.attempts,
            Delivery.sent_at,
            Delivery.last_error,
        )
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.edition_id.desc())
        .limit(limit)
    )
    if before_edition is not None:
        query = query.where(Delivery.edition_id < before_edition)
    return [ReaderDelivery(*row) for row in db.session.execute(query)]


def next_due(
    edition_id: int, first_id: int | None = None, last_id: int | None = None
) -> datetime | None:
    """When the earliest deferred row of the edition (or of one id range of it) may be tried
    again; None when no row waits for a time."""
    query = select(func.min(Delivery.not_before)).where(
        Delivery.edition_id == edition_id, Delivery.state == DeliveryState.QUEUED
    )
    if first_id is not None and last_id is not None:
        query = query.where(Delivery.id.between(first_id, last_id))
    due: datetime | None = db.session.scalar(query)
    return due


# The states whose rows carry a reason worth showing an operator.
EXPLAINED = (
    DeliveryState.FAILED,
    DeliveryState.SKIPPED,
    DeliveryState.UNKNOWN,
    DeliveryState.QUEUED,
)


def reasons(edition_id: int, limit: int = 10) -> list[tuple[str, str, int]]:
    """The most common (state, reason, rows) among an edition's unsent rows."""
    rows = db.session.execute(
        select(Delivery.state, Delivery.last_error, func.count())
        .where(
            Delivery.edition_id == edition_id,
            Delivery.state.in_(EXPLAINED),
            Delivery.last_error.is_not(None),
        )
        .group_by(Delivery.state, Delivery.last_error)
        .order_by(func.count().desc())
        .limit(limit)
    )
    return [(state, reason or "", int(number)) for state, reason, number in rows]


def sending_editions() -> list[int]:
    """The editions still being sent."""
    return list(db.session.scalars(select(Edition.id).where(Edition.state == EditionState.SENDING)))


def _changed(statement: Update) -> int:
    """Run a bulk UPDATE and return how many rows it changed."""
    result = cast(
        "CursorResult[Any]",
        db.session.execute(statement, execution_options={"synchronize_session": False}),
    )
    return int(result.rowcount or 0)


def by_message_id(message_id: str) -> Delivery | None:
    """The delivery whose digest carried this Message-ID, found through indexed columns."""
    parts = parse_message_id(message_id)
    if parts is None:
        return None
    edition_id, uid = parts
    delivery: Delivery | None = db.session.scalar(
        select(Delivery)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Subscriber.uid == uid,
            Delivery.edition_id == edition_id,
            Delivery.message_id == message_id,
        )
    )
    return delivery
