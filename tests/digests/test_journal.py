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
        book.deferred(11, 451)
        book.close(finished=False)
        # A death can cut the last line short: it is left out.
        with book.path.open("ab") as stream:
            stream.write(b"a 12")
    [orphan] = orphans(app)
    assert (orphan.token, orphan.edition_id, orphan.first_id, orphan.last_id) == ("t2", 3, 10, 19)
    assert orphan.offered == {10, 11, 12}
    assert set(orphan.accepted) == {10}
    assert orphan.deferred == {11: 451}
    assert orphan.in_flight() == {12}
    assert orphan.same_boot


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
    assert totals == {"sent": 2, "failed": 0, "unknown": 1, "requeued": 3}
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


def _dead_batch(app: Flask, edition_id: int, token: str) -> tuple[list[int], journal.Journal]:
    with app.app_context():
        first, last = ledger.batches(edition_id, 10)[0]
        facts = ledger.take(edition_id, first, last, token, 6, utcnow())
        db.session.commit()
        return list(facts), journal.Journal.start(token, edition_id, first, last)


def _rows(app: Flask, edition_id: int) -> list[tuple[str, int, str | None]]:
    with app.app_context():
        return [
            (state, attempts, error)
            for state, attempts, error in db.session.execute(
                select(Delivery.state, Delivery.attempts, Delivery.last_error)
                .where(Delivery.edition_id == edition_id)
                .order_by(Delivery.id)
            )
        ]


def test_a_journal_from_an_earlier_boot_is_trusted_only_for_what_was_accepted(
    app: Flask, smtp_server: SMTPTestServer
) -> None:
    # A power loss can cost a journal its last lines: a row it says nothing of may have
    # been sent, so it is unknown, never queued again.
    seed(app, 4)
    edition_id = plan(app)
    ids, book = _dead_batch(app, edition_id, "oldboot")
    with app.app_context():
        book.offered(ids[0])
        book.accepted(ids[0])
        book.close(finished=False)
        header, rest = book.path.read_bytes().split(b"\n", 1)
        book.path.write_bytes(header.rsplit(b" ", 1)[0] + b" another-boot\n" + rest)
        assert sending.replay_orphans()["unknown"] == 3
    rows = _rows(app, edition_id)
    assert [state for state, _, _ in rows] == ["sent", "unknown", "unknown", "unknown"]
    assert "journal may have lost" in (rows[1][2] or "")
    assert smtp_server.messages == []


def test_refusals_in_a_journal_are_replayed_as_the_live_batch_would_have_filed_them(
    app: Flask, smtp_server: SMTPTestServer
) -> None:
    emails = seed(app, 3)
    edition_id = plan(app)
    ids, book = _dead_batch(app, edition_id, "refusals")
    with app.app_context():
        for delivery_id in ids:
            book.offered(delivery_id)
        book.failed(ids[0], 550)
        book.deferred(ids[1], 451)
        book.not_handed_over(ids[2])
        book.close(finished=False)
        sending.replay_orphans()
    rows = _rows(app, edition_id)
    assert rows[0][:2] == ("failed", 1) and "550" in (rows[0][2] or "")
    assert rows[1][:2] == ("queued", 1) and "451" in (rows[1][2] or "")
    # The one whose content never left was sent by the range queued again at once.
    assert rows[2][:2] == ("sent", 1)
    with app.app_context():
        status = db.session.scalar(select(Subscriber.status).where(Subscriber.email == emails[0]))
    assert status == "bounced"
    assert [m.rcpt_tos for m in smtp_server.messages] == [[emails[2]]]


@pytest.mark.parametrize("config_overrides", [{"SMTP_PASSWORD": "x"}], ids=["bad-login"])
def test_a_batch_failing_the_same_way_every_time_backs_off_instead_of_spinning(
    app: Flask, smtp_server: SMTPTestServer
) -> None:
    # A relay that refuses us (here: AUTH over a plain connection, refused by our own
    # settings check as the backend starts) must not turn the edition into a loop that
    # marks rows unknown or logs in again at once.
    app.config.update(smtp_server.app_config(SMTP_USERNAME="user", SMTP_SECURITY="none"))
    seed(app, 3)
    edition_id = plan(app)
    with app.app_context():
        first, last = ledger.batches(edition_id, 10)[0]
        with pytest.raises(Exception, match="AUTH"):
            sending.send_batch(edition_id, first, last)
        replayed = sending.replay_orphans()
        assert replayed == {"sent": 0, "failed": 0, "unknown": 0, "requeued": 3}
        due = ledger.next_due(edition_id)
    rows = _rows(app, edition_id)
    assert [(state, attempts) for state, attempts, _ in rows] == [("queued", 1)] * 3
    assert all("AUTH" in (error or "") for _, _, error in rows)
    assert due is not None and due > utcnow()
    assert smtp_server.connections == 0
    assert orphans(app) == []
