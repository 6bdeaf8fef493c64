"""Batch journals: what a dead batch leaves, and what replaying it does to the ledger."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from newsletter.clock import utcnow
from newsletter.db.models import Delivery, Edition, Subscriber
from newsletter.digests import journal, ledger, sending
from newsletter.extensions import db
from tests.digests.test_delivery import plan, received, seed, states
from tests.support.smtp_server import LOSE_REPLY, SMTPTestServer


@pytest.fixture
def config_overrides(smtp_server: SMTPTestServer) -> dict[str, Any]:
    return smtp_server.app_config(RETRY_BASE_SECONDS=0.05, SMTP_TIMEOUT=1.0, BATCH_SIZE=10)


def orphans(app: Flask) -> list[journal.Orphan]:
    with app.app_context():
        found = []
        for orphan, fd in journal.orphans():
            found.append(orphan)
            os.close(fd)
        return found


def test_a_running_batch_journal_is_not_an_orphan_and_a_finished_one_is_gone(app: Flask) -> None:
    with app.app_context():
        book = journal.Journal.start("t1", 1, 10, 19)
        book.offered(10)
        assert orphans(app) == []
        book.close(finished=True)
        assert not book.path.exists()
        assert orphans(app) == []


def test_a_dead_batch_journal_says_what_was_accepted_refused_and_on_the_wire(app: Flask) -> None:
    with app.app_context():
        book = journal.Journal.start("t2", 3, 10, 19)
        for delivery_id in (10, 11, 12):
            book.offered(delivery_id)
        book.accepted(10)
        book.refused(11)
        book.close(finished=False)
        # A death can cut the last line short: it is left out.
        with book.path.open("ab") as stream:
            stream.write(b"a 12")
    [orphan] = orphans(app)
    assert (orphan.token, orphan.edition_id, orphan.first_id, orphan.last_id) == ("t2", 3, 10, 19)
    assert orphan.offered == {10, 11, 12}
    assert set(orphan.accepted) == {10}
    assert orphan.refused == {11}


def test_recorded_outcomes_are_cut_from_the_journal(app: Flask) -> None:
    with app.app_context():
        book = journal.Journal.start("t3", 1, 1, 5)
        book.offered(1)
        book.accepted(1)
        book.recorded()
        book.offered(2)
        book.close(finished=False)
    [orphan] = orphans(app)
    assert orphan.offered == {2} and orphan.accepted == {}


def test_a_journal_that_cannot_be_read_is_moved_aside_not_replayed(app: Flask) -> None:
    folder = Path(app.config["JOURNAL_DIR"])
    folder.mkdir(parents=True)
    (folder / "garbage.journal").write_bytes(b"not a journal\nz 1\n")
    assert orphans(app) == []
    assert (folder / "garbage.bad").exists()


def test_replay_sends_the_accepted_marks_the_wire_unknown_and_sends_the_rest(
    app: Flask, smtp_server: SMTPTestServer
) -> None:
    emails = seed(app, 6)
    edition_id = plan(app)
    with app.app_context():
        first, last = ledger.batches(edition_id, 10)[0]
        facts = ledger.take(edition_id, first, last, "deadbatch", 6, utcnow())
        db.session.commit()
        ids = list(facts)
        # The dead batch had these accepted, one on the wire, and never got to the rest.
        book = journal.Journal.start("deadbatch", edition_id, first, last)
        for delivery_id in ids[:3]:
            book.offered(delivery_id)
        book.accepted(ids[0])
        book.accepted(ids[1])
        book.close(finished=False)
        totals = sending.replay_orphans()
    assert totals == {"sent": 2, "unknown": 1, "requeued": 3}
    found = states(app, edition_id)
    order = sorted(emails, key=lambda e: int(e[6:].split("@")[0]))
    assert [found[e] for e in order] == ["sent", "sent", "unknown", "sent", "sent", "sent"]
    # The replay queued the range, which sent only the three that never left.
    assert received(smtp_server) == Counter(order[3:])
    with app.app_context():
        reason = db.session.scalar(select(Delivery.last_error).where(Delivery.id == ids[2]))
        assert "on the wire" in (reason or "")
        assert db.session.scalar(select(Edition.state)) == "done"
    assert orphans(app) == []
    assert list(Path(app.config["JOURNAL_DIR"]).iterdir()) == []


def test_reoffer_needs_readers_or_all_and_names_the_bad_line(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer, tmp_path: Path
) -> None:
    emails = seed(app, 3)
    smtp_server.fail("data", LOSE_REPLY, recipients={emails[1]}, times=1)
    edition_id = plan(app)
    with app.app_context():
        for first, last in ledger.batches(edition_id, 10):
            sending.send_batch(edition_id, first, last)
    assert states(app, edition_id)[emails[1]] == "unknown"

    neither = runner.invoke(args=["digest", "reoffer", str(edition_id)])
    assert neither.exit_code == 2 and "--address or --file, or give --all" in neither.output
    listing = tmp_path / "addresses.txt"
    listing.write_text(f"{emails[1]}\nnot-an-address\n")
    bad = runner.invoke(args=["digest", "reoffer", str(edition_id), "--file", str(listing)])
    assert bad.exit_code == 2 and "--file, line 2" in bad.output
    assert states(app, edition_id)[emails[1]] == "unknown"  # nothing half-done
    declined = runner.invoke(args=["digest", "reoffer", str(edition_id), "--all"], input="n\n")
    assert declined.exit_code == 1 and "second one" in declined.output
    assert states(app, edition_id)[emails[1]] == "unknown"
    other = runner.invoke(
        args=["digest", "reoffer", str(edition_id), "--yes", "--address", emails[0]]
    )
    assert "left alone: " + emails[0] in other.output and "Nothing to re-offer" in other.output

    done = runner.invoke(args=["digest", "reoffer", str(edition_id), "--all", "--yes"])
    assert done.exit_code == 0, done.output
    assert "to 1 reader." in done.output
    assert states(app, edition_id)[emails[1]] == "sent"
    # The relay had kept the first copy: a re-offer is the operator's call, and it shows.
    assert [m.rcpt_tos for m in smtp_server.messages].count([emails[1]]) == 2
    with app.app_context():
        subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == emails[1]))
        assert subscriber is not None and subscriber.status == "active"
