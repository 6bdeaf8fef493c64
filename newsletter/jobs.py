"""Handing work to Celery: what a transaction enqueues goes out only when it commits.

A task names rows; a worker that picked it up before the rows were committed would find
nothing, and a task for a change that was rolled back would act on what never happened.
So ``enqueue`` inside a transaction only notes the task on the session; the session's
commit sends it and its rollback drops it. Outside a transaction it goes at once.

Without a broker (``NEWSLETTER_BROKER_URL`` unset) tasks run in this process: those of a
web request in a thread of the process once the request is over (one thread per queue, so
a confirmation mail never waits behind an edition), elsewhere at once. That choice is made
here and nowhere else.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, g, has_request_context
from kombu.exceptions import ChannelError
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from newsletter.errors import MailError
from newsletter.extensions import db

log = logging.getLogger(__name__)

# Task names: the queue's contract with workers already running, so they never change.
SIGNUP_MAIL = "newsletter.tasks.send_signup_mail"
DIGEST_BATCH = "newsletter.tasks.send_digest_batch"
SCHEDULED_DIGEST = "newsletter.tasks.send_scheduled_digest"
RECOVER_DELIVERIES = "newsletter.tasks.recover_deliveries"
RELEASE_WINDOWS = "newsletter.tasks.release_send_windows"
FETCH_FEEDS = "newsletter.tasks.fetch_feeds"

QUEUE = "newsletter"
# Confirmation mails must not wait behind a million-reader edition.
ROUTES = {SIGNUP_MAIL: {"queue": "signup"}}

_PENDING = "newsletter.jobs.pending"
# A request's in-process jobs, handed to the queues' threads when the request is over.
_AFTER_REQUEST = "newsletter_jobs_after_request"
_THREADS = "newsletter.jobs.threads"
_threads_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Job:
    app: Flask
    name: str
    args: tuple[Any, ...]
    countdown: float | None = None


def in_process() -> bool:
    """Whether tasks run in this process (no broker is configured)."""
    return not current_app.config["BROKER_URL"]


def waiting(queue: str = QUEUE) -> int | None:
    """How many tasks wait in the broker's queue; None without a broker or if it cannot say."""
    if in_process():
        return None
    try:
        with current_app.extensions["celery"].connection_for_read() as connection:
            declared = connection.default_channel.queue_declare(queue=queue, passive=True)
            return int(declared.message_count)
    except ChannelError as exc:
        if str(exc.reply_code) == "404":
            return 0  # no such queue: Redis drops an empty list, so nothing waits in it
        log.warning("could not read the length of the %s queue: %s", queue, exc)
        return None
    except Exception:  # unreachable: "cannot say", never a crash
        log.warning("could not read the length of the %s queue", queue, exc_info=True)
        return None


def enqueue(name: str, *args: Any, countdown: float | None = None) -> None:
    """Run task ``name`` with ``args`` (ids and words) once the current transaction commits.

    ``countdown`` delays it by that many seconds; it needs a broker, since in-process
    callers wait and retry themselves.
    """
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    job = Job(app, name, args, countdown)
    session = db.session()
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        _send_all([job])
        return
    pending: dict[SessionTransaction, list[Job]] = session.info.setdefault(_PENDING, {})
    pending.setdefault(transaction, []).append(job)


# Jobs are kept per transaction, savepoints included: a savepoint that rolls back drops its
# jobs, one that is released hands them to the transaction around it, and only the
# outermost transaction's commit sends them. (``after_commit`` also fires when a savepoint
# is released, so it only marks which transaction committed.)
_COMMITTED = "newsletter.jobs.committed"


@event.listens_for(Session, "after_commit")
def _mark_committed(session: Session) -> None:
    if session.info.get(_PENDING):
        committed = session.get_nested_transaction() or session.get_transaction()
        session.info.setdefault(_COMMITTED, set()).add(committed)


@event.listens_for(Session, "after_transaction_end")
def _settle(session: Session, transaction: SessionTransaction) -> None:
    committed: set[SessionTransaction] = session.info.get(_COMMITTED, set())
    was_committed = transaction in committed
    committed.discard(transaction)
    pending: dict[SessionTransaction, list[Job]] | None = session.info.get(_PENDING)
    jobs = pending.pop(transaction, []) if pending else []
    if not jobs or not was_committed:
        return  # nothing enqueued here, or rolled back: what it enqueued never happened
    if transaction.parent is not None:
        pending.setdefault(transaction.parent, []).extend(jobs)  # type: ignore[union-attr]
        return
    _send_all(jobs)


def _send_all(jobs: list[Job]) -> None:
    """Send every job, even when one fails; the first failure is raised after the rest."""
    failure: Exception | None = None
    for job in jobs:
        try:
            _send(job)
        except Exception as exc:
            log.exception("task %s could not be queued", job.name)
            failure = failure or exc
    if failure is not None:
        raise failure


def _send(job: Job) -> None:
    task = job.app.extensions["celery"].tasks[job.name]
    if job.app.config["BROKER_URL"]:
        # The arguments are a few ids and words, whose plain repr is the text Celery's
        # saferepr would put in the message for monitors, at a fraction of its cost.
        # (argsrepr and kwargsrepr are documented options that celery-types lacks.)
        task.apply_async(
            job.args, countdown=job.countdown, argsrepr=repr(job.args), kwargsrepr="{}"
        )
        return
    if job.countdown:
        raise RuntimeError(f"{job.name}: a delayed task needs a broker")
    if has_request_context() and not job.app.testing:
        # The answer must not wait on (or time) the mail server, and its own writes must
        # not wait on the task's: the task goes to a thread once the request is over.
        g.setdefault(_AFTER_REQUEST, []).append(job)
        return
    _run_here(job)


def _hand_over(error: BaseException | None = None) -> None:
    """At the end of a request, start its in-process jobs on their queues' threads.

    Not on the answer's close: a WSGI server does not always call it (Werkzeug's skips it
    when the browser resets the connection after a redirect, as Chromium may), and a send
    that committed its ledger must go out whatever became of the answer.
    """
    for job in g.pop(_AFTER_REQUEST, None) or ():
        _thread_for(job).submit(_run_logged, job)


def _thread_for(job: Job) -> ThreadPoolExecutor:
    """The app's one thread for the job's queue (made when first needed)."""
    queue = str(ROUTES.get(job.name, {}).get("queue", QUEUE))
    with _threads_lock:
        threads: dict[str, ThreadPoolExecutor] = job.app.extensions.setdefault(_THREADS, {})
        if queue not in threads:
            threads[queue] = ThreadPoolExecutor(1, thread_name_prefix=f"newsletter-{queue}")
        return threads[queue]


def _run_logged(job: Job) -> None:
    # Nothing else would see what goes wrong in a thread of its own.
    try:
        _run_here(job)
    except Exception:
        log.exception("in-process task %s%r failed", job.name, job.args)


def _run_here(job: Job) -> None:
    app = job.app
    task = app.extensions["celery"].tasks[job.name]
    with app.app_context():
        try:
            task.apply(args=job.args, throw=app.testing)
        except MailError:
            if app.testing:
                raise
            log.exception("in-process task %s failed", job.name)


def init_app(app: Flask) -> None:
    app.teardown_request(_hand_over)
