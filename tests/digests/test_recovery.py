"""Batches queue themselves for their deferred rows, and recovery queues again only the id
ranges that no task will take.

Against a real Redis broker that no worker reads, so what is queued can be read back.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from newsletter.clock import utcnow
from newsletter.db.models import Delivery, DeliveryState, Edition
from newsletter.digests import sending
from newsletter.extensions import db
from tests.digests.test_delivery import plan, seed

pytestmark = pytest.mark.services

QUEUE = "newsletter"


def queued_ranges(client: Any) -> list[tuple[int, int, int]]:
    """The (edition, first, last) of each batch task waiting in the broker."""
    found = []
    for raw in client.lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        found.append(
            tuple(json.loads(message["headers"]["argsrepr"].replace("(", "[").replace(")", "]")))
        )
    return sorted(found)


@pytest.fixture
def edition(broker_app: tuple[Flask, Any]) -> tuple[Flask, Any, int]:
    """An edition of 50 readers in five ranges, planned an hour ago and queued."""
    app, client = broker_app
    app.config["BATCH_SIZE"] = 10
    seed(app, 50)
    edition_id = plan(app)
    with app.app_context():
        db.session.execute(update(Edition).values(created_at=utcnow() - timedelta(hours=1)))
        db.session.commit()
        assert sending.dispatch(edition_id) == 5
    assert client.llen(QUEUE) == 5
    return app, client, edition_id


def test_an_edition_whose_tasks_wait_in_the_broker_gets_none_again(
    edition: tuple[Flask, Any, int],
) -> None:
    app, client, _ = edition
    with app.app_context():
        assert sending.recover()["queued"] == 0
    assert client.llen(QUEUE) == 5


def test_an_edition_whose_tasks_were_lost_gets_each_range_queued_once(
    edition: tuple[Flask, Any, int],
) -> None:
    app, client, edition_id = edition
    before = queued_ranges(client)
    client.delete(QUEUE)  # a broker restart that kept nothing
    with app.app_context():
        assert sending.recover()["queued"] == 5
        assert queued_ranges(client) == before
        # A minute later the tasks wait again: nothing more is queued.
        assert sending.recover()["queued"] == 0
    assert client.llen(QUEUE) == 5
    assert {first for _, first, _ in before} and all(e == edition_id for e, _, _ in before)


def test_a_retry_that_lost_its_task_gets_its_range_while_the_rest_is_being_sent(
    edition: tuple[Flask, Any, int],
) -> None:
    app, client, edition_id = edition
    client.delete(QUEUE)
    with app.app_context():
        ids = list(
            db.session.scalars(
                select(Delivery.id).where(Delivery.edition_id == edition_id).order_by(Delivery.id)
            )
        )
        # One row is in a live worker's hands; one waits for a retry due an hour ago.
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == ids[0])
            .values(state=DeliveryState.ATTEMPTING, claim="live", claimed_at=utcnow())
        )
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == ids[23])
            .values(not_before=utcnow() - timedelta(hours=1), attempts=1)
        )
        db.session.commit()
        assert sending.recover()["queued"] == 1
    [(edition, first, last)] = queued_ranges(client)
    assert edition == edition_id and first <= ids[23] <= last and last - first < 10


def test_a_batch_leaving_rows_deferred_by_an_earlier_run_queues_itself_for_their_time(
    broker_app: tuple[Flask, Any],
) -> None:
    app, client = broker_app
    seed(app, 10)
    edition_id = plan(app)
    later = utcnow() + timedelta(hours=1)
    with app.app_context():
        ids = list(
            db.session.scalars(
                select(Delivery.id).where(Delivery.edition_id == edition_id).order_by(Delivery.id)
            )
        )
        # Deferred by an earlier run of this range (a 451 an hour's backoff ago).
        db.session.execute(
            update(Delivery).where(Delivery.id == ids[4]).values(not_before=later, attempts=1)
        )
        db.session.commit()
        assert sending.run_batch(edition_id, ids[0], ids[-1])["sent"] == 9
    [raw] = client.lrange(QUEUE, 0, -1)
    message = json.loads(raw)
    assert json.loads(message["headers"]["argsrepr"].replace("(", "[").replace(")", "]")) == [
        edition_id,
        ids[0],
        ids[-1],
    ]
    eta = message["headers"]["eta"]
    assert eta is not None and eta[:16] == later.isoformat()[:16]
