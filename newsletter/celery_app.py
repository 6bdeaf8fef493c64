"""Joining Celery to the Flask app; without a broker, tasks run in this process."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.schedules import crontab
from celery.signals import worker_process_init
from flask import Flask

from newsletter import jobs
from newsletter.db.models import Frequency


def beat_schedule(app: Flask) -> dict[str, dict[str, Any]]:
    """Digests at the configured local hour, feeds every quarter hour, recovery every
    RECOVER_EVERY_SECONDS (a minute), and with SEND_IN_READER_TIME the send windows each
    minute."""
    hour = int(app.config["DIGEST_HOUR"])
    schedule: dict[str, dict[str, Any]] = {
        "daily-digest": {
            "task": jobs.SCHEDULED_DIGEST,
            "schedule": crontab(hour=hour, minute=0),
            "args": (Frequency.DAILY.value,),
        },
        "weekly-digest": {
            "task": jobs.SCHEDULED_DIGEST,
            "schedule": crontab(hour=hour, minute=0, day_of_week=app.config["DIGEST_WEEKDAY"]),
            "args": (Frequency.WEEKLY.value,),
        },
        "fetch-feeds": {"task": jobs.FETCH_FEEDS, "schedule": 15 * 60.0},
        "recover-deliveries": {
            "task": jobs.RECOVER_DELIVERIES,
            "schedule": float(app.config["RECOVER_EVERY_SECONDS"]),
        },
    }
    if app.config["SEND_IN_READER_TIME"]:
        # At the start of every minute, so a window opens on its readers' hour, not after it.
        schedule["release-send-windows"] = {
            "task": jobs.RELEASE_WINDOWS,
            "schedule": crontab(minute="*"),
        }
    return schedule


def celery_init_app(app: Flask) -> Celery[Any]:
    """Create the Celery app whose tasks run inside ``app``'s context."""

    class FlaskTask(Task[Any, Any]):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    broker = app.config["BROKER_URL"]
    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(
        {
            "broker_url": broker or "memory://",
            "task_always_eager": not broker,
            "task_eager_propagates": app.testing,
            "task_ignore_result": True,
            # A task is acknowledged only once it has finished, so a killed worker's task
            # is delivered again; every task is written to be safe to run twice.
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": {"visibility_timeout": 3600},
            "task_default_queue": jobs.QUEUE,
            "task_routes": jobs.ROUTES,
            "timezone": app.config["TIMEZONE"],
            "beat_schedule": beat_schedule(app),
        }
    )
    celery.conf.update(app.config.get("CELERY", {}))

    def replay_journals(**_: Any) -> None:
        # A worker process that starts after one of this machine was killed puts that
        # batch's outcomes into the ledger at once, not a lease later. (Sent in each prefork
        # child and in a solo worker; never in the prefork parent, whose database
        # connections every child forked later would share.)
        from newsletter.digests.sending import replay_orphans
        from newsletter.extensions import db

        with app.app_context():
            # Connections inherited through the fork belong to the parent: never reuse them.
            db.engine.dispose(close=False)
            try:
                replay_orphans()
            except Exception:  # the database may be down: the next batch or pass retries
                logging.getLogger(__name__).exception("replaying batch journals failed")

    worker_process_init.connect(replay_journals, weak=False, dispatch_uid="newsletter-journals")
    celery.set_default()
    app.extensions["celery"] = celery
    # Tasks are declared with @shared_task; importing them registers them with this app.
    from newsletter import tasks  # noqa: F401

    return celery
