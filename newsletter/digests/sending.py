"""Sending an edition: batches over one connection each, outcomes into the ledger."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from newsletter import jobs
from newsletter.clock import utcnow
from newsletter.db.models import EditionKind, EditionState
from newsletter.digests import alerts, journal, ledger, planning, windows
from newsletter.digests.compose import Composer, Reader
from newsletter.digests.content import load_content
from newsletter.errors import (
    MailError,
    NotHandedOver,
    NotResumable,
    OutcomeUnknown,
    RecipientRejected,
    TransientMailError,
)
from newsletter.extensions import db
from newsletter.mail.backends import get_backend
from newsletter.mail.fanout import Fanout
from newsletter.mail.message import OutgoingMessage
from newsletter.mail.throttle import Throttle

log = logging.getLogger(__name__)

# How far one batch's retry delays may stray from the exponential backoff, as factors.
JITTER = (0.8, 1.2)


@dataclass
class BatchResult:
    """What one batch did, for logs and for scheduling its retry."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    unknown: int = 0
    retry_at: datetime | None = None
    stopped: str | None = None
    # This run's share of the retry delays: the readers one batch defers come back together
    # (one task, one connection), while the batches an outage deferred at the same moment
    # come back spread out rather than all at once.
    jitter: float = field(default_factory=lambda: random.uniform(*JITTER))


def composer_for(edition_id: int) -> Composer:
    """Editions never change once planned, so each process renders each variant once."""
    # Kept on the app, not the module: another app (tests, another database) has its own.
    composers: dict[int, Composer] = current_app.extensions.setdefault("newsletter.composers", {})
    found = composers.get(edition_id)
    if found is None:
        if len(composers) > 8:
            composers.clear()
        found = composers[edition_id] = Composer(load_content(edition_id))
    return found


def backoff(attempts: int, jitter: float = 1.0) -> timedelta:
    """Exponential delay before the next try: base, 2x base, 4x base, ... capped at a day,
    times ``jitter``."""
    base = float(current_app.config["RETRY_BASE_SECONDS"])
    return timedelta(seconds=min(base * (2 ** max(attempts - 1, 0)) * jitter, 86400.0))


def send_batch(edition_id: int, first_id: int, last_id: int) -> BatchResult:
    """Send the queued rows of one id range over its connections; safe to run twice."""
    # A batch of this machine that died left its journal: its rows come first.
    replay_orphans()
    result = BatchResult()
    config = current_app.config
    token = secrets.token_hex(8)
    size = int(config["JOURNAL_EVERY"])
    fanout: Fanout[int] | None = None
    pending = _Pending()
    cursor = first_id
    book = journal.Journal.start(token, edition_id, first_id, last_id)
    finished = False
    facts: ledger.Facts = {}
    alert_topic: str | None = None
    try:
        while True:
            # One transaction records what was heard so far and claims the next chunk.
            # With several connections they go on sending the last chunk meanwhile, so
            # the outcomes of its last messages come in the next write.
            with fanout.lock if fanout is not None else contextlib.nullcontext():
                heard = pending.take()
                # Nothing on the wire and everything heard is in this write: the journal
                # may then forget it all (``replay`` only reads rows still claimed anyway).
                idle = fanout is None or fanout.idle()
            ledger.record(token, heard)
            # The range is walked once, in id order: a row deferred for a retry waits for
            # the batch's next run instead of being taken again by this one.
            if result.stopped:
                facts = {}
                ledger.release_rest(edition_id, first_id, last_id, result.retry_at)
            else:
                facts = ledger.take(edition_id, cursor, last_id, token, size, utcnow())
            db.session.commit()
            if idle:
                book.recorded()
            if not facts:
                break
            cursor = max(facts) + 1
            if fanout is None:
                composer = composer_for(edition_id)
                throttle = Throttle.for_app()
                fanout = _connections(book, pending, result)
                # Decided once a batch, so a digest's chunks cost no more than before.
                if composer.content.kind == EditionKind.ALERT:
                    alert_topic = composer.content.topic
            if alert_topic is not None:
                facts = alerts.recheck(facts, alert_topic)
            with fanout.lock:
                pending.claimed.update(facts)
            composer.refresh_date()
            fanout.feed(_messages(composer, throttle, facts, pending, result))
            # Several connections: the next chunk is claimed once the one before this is
            # all taken, so one chunk always waits for them and none waits for the ledger.
            fanout.wait_taken(leave=1)
        if fanout is not None:
            fanout.finish()
            ledger.record(token, pending.take())
            if result.stopped:
                ledger.release_rest(edition_id, first_id, last_id, result.retry_at)
            db.session.commit()
        finished = True
    except SQLAlchemyError:
        raise  # the database went away: the journal stays, for the retry to replay
    except Exception as exc:
        # Anything else (a relay refusing our login, a template that cannot render) would
        # come back at once if the rest were queued as it is: it waits out a backoff.
        tries = max((claimed.attempts for claimed in pending.claimed.values()), default=0) + 1
        until = utcnow() + backoff(tries, result.jitter)
        with contextlib.suppress(OSError):
            book.gave_up(until.timestamp(), f"the batch stopped: {exc!r}")
        raise
    finally:
        if fanout is not None:
            fanout.close()  # first: no connection writes to the journal after this
        # Unfinished (the database went away, an error): the journal stays for a replay.
        book.close(finished=finished)
    ledger.finish_if_done(edition_id)
    return result


@dataclass
class _Pending:
    """A batch's claimed rows, and the outcomes heard since the ledger was last written.

    The connections add to ``outcomes`` under the fanout's lock; the batch swaps it for an
    empty one under the same lock before each ledger write.
    """

    claimed: ledger.Facts = field(default_factory=dict)
    outcomes: ledger.Outcomes = field(default_factory=ledger.Outcomes)

    def take(self) -> ledger.Outcomes:
        heard, self.outcomes = self.outcomes, ledger.Outcomes()
        return heard


def _connections(book: journal.Journal, pending: _Pending, result: BatchResult) -> Fanout[int]:
    """The batch's backends: ``SMTP_CONNECTIONS`` of them where each is a connection."""
    config = current_app.config
    first = get_backend()
    count = int(config["SMTP_CONNECTIONS"]) if first.parallel else 1
    heard = functools.partial(_heard, book, pending, int(config["MAX_ATTEMPTS"]), result)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # Composing may render a template (a variant's first reader): threads need the app.
    backends = [first, *(get_backend() for _ in range(count - 1))]
    return Fanout(backends, book.offered, heard, app.app_context)


def _heard(
    book: journal.Journal,
    pending: _Pending,
    max_attempts: int,
    result: BatchResult,
    delivery_id: int,
    error: MailError | None,
) -> None:
    """One message's outcome, as its connection reads it: journalled, then filed."""
    _journal(book, delivery_id, error)  # first: from here a death loses nothing
    claimed = pending.claimed[delivery_id]
    assert claimed.reader is not None
    _outcome(
        delivery_id, claimed.attempts, claimed.reader, error, max_attempts, pending.outcomes, result
    )


def _journal(book: journal.Journal, delivery_id: int, error: MailError | None) -> None:
    """Write a message's verdict to the batch's journal, as ``_outcome`` will file it."""
    if error is None:
        book.accepted(delivery_id)
    elif isinstance(error, OutcomeUnknown):
        pass  # its "offered" line, with no verdict, says so
    elif isinstance(error, NotHandedOver):
        book.not_handed_over(delivery_id)
    elif isinstance(error, TransientMailError):
        book.deferred(delivery_id, error.code)
    elif isinstance(error, RecipientRejected):
        book.failed(delivery_id, error.code)
    else:
        book.failed(delivery_id, None)


def replay_orphans() -> dict[str, int]:
    """Apply the journals of this machine's dead batches to the ledger, and queue their rest.

    Runs when a batch starts, when a worker process starts and with every recovery pass,
    so a worker killed mid-chunk has its outcomes back within moments, long before the lease
    would have made them "unknown".
    """
    totals = {"sent": 0, "failed": 0, "unknown": 0, "requeued": 0}
    for orphan, fd in journal.orphans():
        try:
            found = ledger.replay(orphan)
            # The dead batch's task may be lost with it, and rows of its range beyond the
            # claimed chunk would wait for it: its range is queued again (a run that finds
            # nothing left does nothing), after the backoff if the batch gave up on an error.
            wait = (orphan.retry_at - utcnow()).total_seconds() if orphan.retry_at else 0.0
            # (In process, the command sending the edition waits for due rows itself.)
            if not (jobs.in_process() and wait > 0):
                jobs.enqueue(
                    jobs.DIGEST_BATCH,
                    orphan.edition_id,
                    orphan.first_id,
                    orphan.last_id,
                    countdown=max(wait, 0.0) or None,
                )
            db.session.commit()
        except BaseException:
            db.session.rollback()
            os.close(fd)  # kept, for the next try
            raise
        journal.discard(orphan, fd)
        log.warning(
            "edition %s batch %s-%s had died; its journal gave %s",
            orphan.edition_id,
            orphan.first_id,
            orphan.last_id,
            found,
        )
        for key in totals:
            totals[key] += found[key]
    return totals


def _messages(
    composer: Composer,
    throttle: Throttle,
    facts: ledger.Facts,
    pending: _Pending,
    result: BatchResult,
) -> Iterator[tuple[int, OutgoingMessage]]:
    """A chunk's messages, composed as the connections take them; skips and stops on the way.

    (It runs under the fanout's lock, and ``pending.outcomes`` is read anew each time: the
    batch swaps it between ledger writes.)
    """
    for delivery_id, claimed in facts.items():
        if result.stopped:
            # The server is unreachable: hand the rest back untouched for the retry.
            pending.outcomes.release.append((delivery_id, result.retry_at))
            continue
        if claimed.reader is None:
            pending.outcomes.skipped.append((delivery_id, claimed.skip_reason))
            result.skipped += 1
            continue
        try:
            message = composer.message(claimed.reader)
        except Exception as exc:  # one reader's mail, not the batch: record why and go on
            log.exception(
                "edition %s: delivery %s could not be composed", composer.content.id, delivery_id
            )
            pending.outcomes.failed.append((delivery_id, f"could not be composed: {exc!r}"[:500]))
            result.failed += 1
            continue
        throttle.wait()
        yield delivery_id, message


def _outcome(
    delivery_id: int,
    attempts: int,
    reader: Reader,
    error: MailError | None,
    max_attempts: int,
    outcomes: ledger.Outcomes,
    result: BatchResult,
) -> None:
    """File one message's outcome under the ledger update it needs."""
    if error is None:
        outcomes.sent.append(delivery_id)
        result.sent += 1
    elif isinstance(error, OutcomeUnknown):
        outcomes.unknown.append((delivery_id, str(error)[:500]))
        result.unknown += 1
        # The connection is gone without a word: the rest waits for the batch's retry.
        result.stopped = str(error)
        result.retry_at = result.retry_at or utcnow() + backoff(attempts + 1, result.jitter)
    elif isinstance(error, NotHandedOver):
        # Its content never left: back to the queue, no attempt counted.
        outcomes.release.append(
            (delivery_id, result.retry_at or utcnow() + backoff(attempts + 1, result.jitter))
        )
        result.deferred += 1
    elif isinstance(error, TransientMailError):
        tries = attempts + 1
        at = utcnow() + backoff(tries, result.jitter)
        if tries >= max_attempts:
            outcomes.failed.append((delivery_id, f"gave up after {tries} attempts: {error}"[:500]))
            result.failed += 1
        else:
            outcomes.retry.append((delivery_id, str(error)[:500], at))
            result.deferred += 1
            result.retry_at = min(result.retry_at or at, at)
        if error.code is None:
            # No reply at all (refused, dropped, timed out): stop this batch rather than
            # wait out the timeout for every remaining reader; the rest is retried at `at`.
            result.stopped = str(error)
            result.retry_at = min(result.retry_at or at, at)
    elif isinstance(error, RecipientRejected):
        outcomes.failed.append((delivery_id, str(error)[:500]))
        outcomes.bounced.append(reader.subscriber_id)
        result.failed += 1
    else:
        outcomes.failed.append((delivery_id, str(error)[:500]))
        result.failed += 1


def run_batch(edition_id: int, first_id: int, last_id: int) -> dict[str, int]:
    """``send_batch`` as a worker runs it: a deferred range is queued again for its time."""
    result = send_batch(edition_id, first_id, last_id)
    # Rows of the range deferred in this run or an earlier one: the next run goes when the
    # first of them is due. (In process, the command that started the send waits itself.)
    due = ledger.next_due(edition_id, first_id, last_id) if not jobs.in_process() else None
    if due is not None:
        delay = max(1.0, (due - utcnow()).total_seconds())
        jobs.enqueue(jobs.DIGEST_BATCH, edition_id, first_id, last_id, countdown=delay)
    db.session.commit()
    if result.stopped:
        log.warning(
            "edition %s batch %s-%s stopped: %s", edition_id, first_id, last_id, result.stopped
        )
    return {
        "sent": result.sent,
        "failed": result.failed,
        "deferred": result.deferred,
        "unknown": result.unknown,
    }


def dispatch(edition_id: int) -> int:
    """Queue a batch task for each id range of the edition's waiting rows (sent in readers'
    time: of the rows whose window is open)."""
    size = int(current_app.config["BATCH_SIZE"])
    now = utcnow()
    windows.release_due(now, edition_id)
    opened = windows.opened(edition_id, now)
    ranges = ledger.batches(edition_id, size, None if opened is None else (0, opened.through))
    for first_id, last_id in ranges:
        jobs.enqueue(jobs.DIGEST_BATCH, edition_id, first_id, last_id)
    db.session.commit()
    if not ranges:
        ledger.finish_if_done(edition_id)
    return len(ranges)


@dataclass(frozen=True, slots=True)
class Started:
    """An edition (or alert) on its way: how many readers its ledger holds."""

    edition_id: int
    readers: int
    resumed: bool  # an unfinished edition taken up again rather than a new one
    batches: int  # queued as tasks (0 when the caller sends them itself)
    # On resuming: rows of vanished workers queued again, and those whose outcome is unknown.
    requeued: int = 0
    unknown: int = 0


def start(frequency: str, *, queue: bool = True) -> Started | None:
    """Resume the unfinished edition of this frequency (``planning.unfinished``) or plan the
    next one, and queue its batches (unless ``queue`` is false: the caller sends them).
    None: nothing new to send.

    The CLI's ``digest send``, the console's "Send now", beat and the API call this one
    function.
    """
    edition = planning.unfinished(frequency)
    if edition is not None:
        return resume(edition.id, queue=queue)
    edition = planning.plan(frequency)
    if edition is None:
        return None
    return _started(edition.id, queue)


def resume(edition_id: int, *, queue: bool = True) -> Started:
    """Take up this edition (or alert) again, never planning another: rows of vanished
    workers are queued again or marked unknown (``ledger.recover``), and the ranges no task
    will take are queued (``requeue``; unless ``queue`` is false: the caller sends them).

    Refused (``NotResumable``) when there is no such edition or it is done.
    """
    edition = planning.edition(edition_id)
    if edition is None:
        raise NotResumable(edition_id, f"there is no edition {edition_id}")
    if edition.state != EditionState.SENDING:
        raise NotResumable(
            edition_id, f"edition {edition_id} is done: every one of its messages has an outcome"
        )
    found = ledger.recover()
    batches = requeue(edition_id) if queue else 0
    readers = sum(ledger.counts(edition_id).values())
    return Started(edition_id, readers, True, batches, found["requeued"], found["unknown"])


def requeue(edition_id: int) -> int:
    """Queue the batches of a resumed edition that no task will take; returns how many.

    Without a broker no task waits anywhere but in this process, so every waiting range is
    queued (``dispatch``); a range a batch here is still sending is found taken. With one,
    only what the recovery pass would queue (``ledger.unattended``): a resume repeated while
    the edition is being sent (a CMS retrying, a second click) adds no second set of tasks.
    """
    if jobs.in_process():
        return dispatch(edition_id)
    return _unattended(edition_id, idle=jobs.waiting() == 0, now=utcnow())


def _unattended(edition_id: int, *, idle: bool, now: datetime) -> int:
    """Queue the edition's ranges no task will take (``ledger.unattended``); how many."""
    config = current_app.config
    stale = now - timedelta(seconds=float(config["LEASE_SECONDS"]))
    ranges = ledger.unattended(
        edition_id,
        int(config["BATCH_SIZE"]),
        stale,
        queue_idle=idle,
        opened=windows.opened(edition_id, now),
    )
    for first_id, last_id in ranges:
        jobs.enqueue(jobs.DIGEST_BATCH, edition_id, first_id, last_id)
    db.session.commit()
    ledger.finish_if_done(edition_id)
    return len(ranges)


def start_alert(article_id: int, topic: str | None = None, *, queue: bool = True) -> Started:
    """Plan a breaking-news alert (``alerts.plan``) and queue its batches."""
    edition = alerts.plan(article_id, topic)
    return _started(edition.id, queue)


def _started(edition_id: int, queue: bool) -> Started:
    """A freshly planned edition (or alert), its batches queued unless ``queue`` is false."""
    readers = sum(ledger.counts(edition_id).values())
    batches = dispatch(edition_id) if queue else 0
    return Started(edition_id, readers, False, batches)


def send_scheduled(frequency: str) -> int | None:
    """Resume the unfinished edition of this frequency, or plan and send the next one."""
    started = start(frequency)
    if started is None:
        log.info("no new articles for the %s digest", frequency)
        return None
    return started.edition_id


def release_windows() -> int:
    """Queue the batches of every send window whose moment has come; returns how many
    windows opened."""
    size = int(current_app.config["BATCH_SIZE"])
    released = windows.release_due(utcnow())
    for edition_id, first_id, last_id in released:
        for first, last in ledger.batches(edition_id, size, (first_id, last_id)):
            jobs.enqueue(jobs.DIGEST_BATCH, edition_id, first, last)
    db.session.commit()
    return len(released)


def recover() -> dict[str, int]:
    """Reclaim rows of vanished workers, and queue again the ranges no task will take."""
    replayed = replay_orphans()
    found = ledger.recover()
    # A window whose moment passed while beat was away opens now.
    release_windows()
    now = utcnow()
    idle = jobs.waiting() == 0
    queued = sum(
        _unattended(edition_id, idle=idle, now=now) for edition_id in ledger.sending_editions()
    )
    return {**found, "queued": queued, "replayed": sum(replayed.values())}
