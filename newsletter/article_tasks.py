"""The periodic feed fetch, run by Celery beat as ``newsletter.tasks.fetch_feeds``."""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from . import articles
from .errors import FeedError
from .extensions import db

log = logging.getLogger(__name__)


@shared_task(name="newsletter.tasks.fetch_feeds")
def fetch_feeds() -> dict[str, int]:
    """Fetch every configured feed; one bad feed is logged and never stops the others."""
    totals = {"feeds": 0, "failed": 0, "added": 0, "skipped": 0}
    timeout = articles.feed_timeout()
    for feed in current_app.config["FEEDS"]:
        totals["feeds"] += 1
        try:
            report = articles.fetch_and_store(feed, timeout=timeout)
        except FeedError as exc:
            totals["failed"] += 1
            log.warning("feed failed: %s", exc)
            continue
        except Exception:
            # A database hiccup or a parser bug on one feed must not cost the other feeds.
            totals["failed"] += 1
            db.session.rollback()
            log.exception("feed %s failed unexpectedly", feed)
            continue
        totals["added"] += report.added
        totals["skipped"] += report.skipped
        for problem in report.problems:
            log.warning("entry skipped: %s", problem)
        log.info("%s: %d new, %d already known", feed, report.added, report.skipped)
    return totals
