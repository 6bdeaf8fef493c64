"""Every Celery task: a thin shell that takes ids and calls the service that does the work.

Each task is safe to run twice (a killed worker's task is delivered again) and re-reads
the rows it names. ``celery_app`` imports this module to register them.
"""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import InterfaceError, OperationalError

from newsletter import jobs
from newsletter.articles import store
from newsletter.digests import sending
from newsletter.errors import TransientMailError
from newsletter.readers import notices


@shared_task(
    name=jobs.SIGNUP_MAIL,
    autoretry_for=(TransientMailError,),
    retry_backoff=30,
    retry_backoff_max=3600,
    max_retries=8,
)
def send_signup_mail(
    subscriber_id: int,
    notice: str,
    key: str | None = None,
    request: str | None = None,
    language: str | None = None,
) -> None:
    """Send the confirmation link (or, to an active reader, an "already subscribed" notice)."""
    notices.send(subscriber_id, notices.Notice(notice), key, request, language)


@shared_task(
    name=jobs.DIGEST_BATCH,
    # The database went away mid-batch (a restart, a failover): the batch's journal holds
    # what it sent, and the next batch to start on this machine (the retry, or any other)
    # puts that into the ledger first.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=40,
)
def send_digest_batch(edition_id: int, first_id: int, last_id: int) -> dict[str, int]:
    """Send one id range of an edition; a redelivered or repeated task finds nothing left."""
    return sending.run_batch(edition_id, first_id, last_id)


@shared_task(name=jobs.SCHEDULED_DIGEST)
def send_scheduled_digest(frequency: str) -> int | None:
    """Beat's entry: resume an unfinished edition of this frequency, or plan the next one."""
    return sending.send_scheduled(frequency)


@shared_task(name=jobs.RECOVER_DELIVERIES)
def recover_deliveries() -> dict[str, int]:
    """Reclaim rows of vanished workers, queue what no task will take, forget old mail keys."""
    return {**sending.recover(), "forgotten_keys": notices.forget_sent()}


@shared_task(name=jobs.RELEASE_WINDOWS)
def release_send_windows() -> int:
    """Beat's entry, each minute with SEND_IN_READER_TIME: queue the windows whose hour came."""
    return sending.release_windows()


@shared_task(name=jobs.FETCH_FEEDS)
def fetch_feeds() -> dict[str, int]:
    """Fetch every configured feed; one bad feed is logged and never stops the others."""
    return store.fetch_configured()
