"""Exactly-once delivery of an edition through a real SMTP server, whatever fails."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from newsletter.clock import utcnow
from newsletter.db.models import Article, Delivery, Subscriber, Suppression
from newsletter.digests import ledger, planning, sending
from newsletter.extensions import db
from newsletter.readers.addresses import address_hash
from tests.support.smtp_server import DROP, HANG, LOSE_REPLY, SMTPTestServer


@pytest.fixture
def config_overrides(smtp_server: SMTPTestServer) -> dict[str, Any]:
    return smtp_server.app_config(
        RETRY_BASE_SECONDS=0.05, SMTP_TIMEOUT=1.0, JOURNAL_EVERY=4, BATCH_SIZE=10
    )


def seed(app: Flask, readers: int, topics: tuple[str, ...] = ("analytics",)) -> list[str]:
    """Articles in two sections and ``readers`` active daily readers; returns addresses."""
    now = utcnow()
    with app.app_context():
        for index, (category, topic) in enumerate(
            [("Analytics", "analytics"), ("Business", "business")] * 2
        ):
            db.session.add(
                Article(
                    guid=f"urn:test:{index}",
                    url=f"https://ledger.example/story/{index}",
                    title=f"Story {index}",
                    summary="<p>Summary</p>",
                    category=category,
                    topic=topic,
                    published_at=now - timedelta(minutes=index + 1),
                )
            )
        emails = [f"reader{index}@example.org" for index in range(readers)]
        for email in emails:
            subscriber = Subscriber(email=email, status="active", frequency="daily")
            subscriber.topics = list(topics)
            db.session.add(subscriber)
        db.session.commit()
    return emails


def plan(app: Flask) -> int:
    with app.app_context():
        edition = planning.plan("daily")
        assert edition is not None
        return edition.id


def send_all(app: Flask, edition_id: int) -> None:
    with app.app_context():
        for first_id, last_id in ledger.batches(edition_id, 10):
            sending.send_batch(edition_id, first_id, last_id)


def states(app: Flask, edition_id: int) -> dict[str, str]:
    with app.app_context():
        rows = db.session.execute(
            select(Subscriber.email, Delivery.state)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.edition_id == edition_id)
        )
        return {email: state for email, state in rows}


def received(server: SMTPTestServer) -> Counter[str]:
    """How many copies each recipient got, counted by Message-ID."""
    copies: Counter[str] = Counter()
    ids: set[str] = set()
    for message in server.messages:
        parsed = message.parsed()
        assert parsed["Message-ID"] not in ids, "the same Message-ID arrived twice"
        ids.add(parsed["Message-ID"])
        copies.update(message.rcpt_tos)
    return copies


def send_until_done(app: Flask, edition_id: int, limit: float = 20.0) -> None:
    """Run batches, waiting out retry delays, until the edition has nothing left to send."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        send_all(app, edition_id)
        with app.app_context():
            if ledger.finish_if_done(edition_id):
                return
        time.sleep(0.05)
    raise AssertionError(f"edition not done: {states(app, edition_id)}")


def test_every_reader_gets_exactly_one_copy(app: Flask, smtp_server: SMTPTestServer) -> None:
    emails = seed(app, 25)
    edition_id = plan(app)
    send_all(app, edition_id)
    send_all(app, edition_id)  # a second run of every batch finds nothing left to send
    assert received(smtp_server) == Counter(emails)
    assert set(states(app, edition_id).values()) == {"sent"}


@pytest.mark.parametrize("connections", [1, 3])
def test_each_batch_keeps_its_connections_for_all_its_messages(
    app: Flask, smtp_server: SMTPTestServer, connections: int
) -> None:
    app.config["SMTP_CONNECTIONS"] = connections
    emails = seed(app, 20)
    send_all(app, plan(app))
    assert received(smtp_server) == Counter(emails)
    # Two batches of ten, over their own connections, never one connection per message.
    if connections == 1:
        assert smtp_server.connections == 2
    else:
        assert 2 < smtp_server.connections <= 2 * connections


def test_a_batch_spreads_its_messages_over_its_connections(
    app: Flask, smtp_server: SMTPTestServer
) -> None:
    app.config.update(SMTP_CONNECTIONS=4, JOURNAL_EVERY=20, BATCH_SIZE=40)
    emails = seed(app, 40)
    edition_id = plan(app)
    with app.app_context():
        for first_id, last_id in ledger.batches(edition_id, 40):
            sending.send_batch(edition_id, first_id, last_id)
    assert received(smtp_server) == Counter(emails)
    assert set(states(app, edition_id).values()) == {"sent"}
    per_connection = Counter(message.connection for message in smtp_server.messages)
    assert len(per_connection) > 1


def test_greylisted_reader_is_retried_and_gets_one_copy(
    app: Flask, smtp_server: SMTPTestServer
) -> None:
    emails = seed(app, 5)
    smtp_server.fail("rcpt", "451 4.7.1 Greylisted, try again", recipients={emails[2]}, times=1)
    edition_id = plan(app)
    send_all(app, edition_id)
    assert states(app, edition_id)[emails[2]] == "queued"
    with app.app_context():
        row = db.session.scalars(
            select(Delivery).join(Subscriber).where(Subscriber.email == emails[2])
        ).one()
        assert row.attempts == 1 and "451" in (row.last_error or "")
        assert row.not_before is not None and row.not_before > utcnow() - timedelta(seconds=5)
    send_until_done(app, edition_id)
    assert received(smtp_server) == Counter(emails)


def test_permanent_rejection_suppresses_only_that_address(
    app: Flask, smtp_server: SMTPTestServer
) -> None:
    emails = seed(app, 6)
    smtp_server.fail("rcpt", "550 5.1.1 No such user", recipients={emails[1], emails[4]})
    edition_id = plan(app)
    send_until_done(app, edition_id)
    assert received(smtp_server) == Counter(e for e in emails if e not in (emails[1], emails[4]))
    final = states(app, edition_id)
    assert final[emails[1]] == final[emails[4]] == "failed"
    with app.app_context():
        bounced = db.session.scalars(
            select(Subscriber.email).where(Subscriber.status == "bounced")
        ).all()
        assert sorted(bounced) == sorted([emails[1], emails[4]])
        hashes = set(db.session.scalars(select(Suppression.address_hash)))
        assert hashes == {address_hash(emails[1]), address_hash(emails[4])}
        row = db.session.scalars(
            select(Delivery).join(Subscriber).where(Subscriber.email == emails[1])
        ).one()
        assert row.attempts == 1 and "550" in (row.last_error or "")


def test_connection_dropped_before_the_content_is_retried_and_delivered_once(
    app: Flask, smtp_server: SMTPTestServer
) -> None:
    emails = seed(app, 8)
    smtp_server.fail("rcpt", DROP, recipients={emails[3]}, times=1)
    edition_id = plan(app)
    send_until_done(app, edition_id)
    assert received(smtp_server) == Counter(emails)


@pytest.mark.parametrize("fault", [LOSE_REPLY, DROP], ids=["kept-reply-lost", "dropped-in-data"])
def test_a_message_sent_whole_whose_reply_never_came_is_unknown_and_not_sent_again(
    app: Flask, smtp_server: SMTPTestServer, fault: str
) -> None:
    # After the final dot the client cannot know whether the server kept the message
    # (RFC 1047): LOSE_REPLY kept it, DROP did not, and both look alike from here.
    emails = seed(app, 8)
    smtp_server.fail("data", fault, recipients={emails[3]}, times=1)
    edition_id = plan(app)
    send_until_done(app, edition_id)
    send_until_done(app, edition_id)  # a second pass must not resend it either
    expected = Counter(emails)
    if fault == DROP:
        del expected[emails[3]]
    assert received(smtp_server) == expected
    with app.app_context():
        row = db.session.scalars(
            select(Delivery).join(Subscriber).where(Subscriber.email == emails[3])
        ).one()
        assert row.state == "unknown"
        assert row.attempts == 1
        assert "RFC 1047" in (row.last_error or "")
        assert ledger.counts(edition_id) == {"sent": 7, "unknown": 1}


@pytest.mark.parametrize("connections", [1, 3])
def test_server_that_never_answers_times_out_and_the_batch_is_retried(
    app: Flask, smtp_server: SMTPTestServer, connections: int
) -> None:
    app.config["SMTP_CONNECTIONS"] = connections
    emails = seed(app, 6)
    smtp_server.fail("mail", HANG, times=1)
    edition_id = plan(app)
    started = time.monotonic()
    send_all(app, edition_id)
    # One timeout stops the batch instead of being waited out once per reader.
    assert time.monotonic() - started < 10
    first = states(app, edition_id)
    if connections == 1:
        assert set(first.values()) == {"queued"}
    else:
        # The other connections went on while one waited: the silent one's reader waits.
        assert "queued" in first.values() and set(first.values()) <= {"queued", "sent"}
    send_until_done(app, edition_id)
    assert received(smtp_server) == Counter(emails)


def test_retries_stop_at_the_limit_with_the_reason_recorded(
    app: Flask, smtp_server: SMTPTestServer
) -> None:
    emails = seed(app, 3)
    smtp_server.fail("rcpt", "421 4.3.2 Service shutting down", recipients={emails[0]})
    edition_id = plan(app)
    send_until_done(app, edition_id)
    with app.app_context():
        row = db.session.scalars(
            select(Delivery).join(Subscriber).where(Subscriber.email == emails[0])
        ).one()
        assert row.state == "failed"
        assert row.attempts == app.config["MAX_ATTEMPTS"]
        assert "gave up after" in (row.last_error or "") and "421" in (row.last_error or "")
        assert (
            db.session.scalar(select(Subscriber.status).where(Subscriber.email == emails[0]))
            == "active"
        )
    assert received(smtp_server) == Counter(emails[1:])


def test_unsubscribe_after_planning_wins(app: Flask, smtp_server: SMTPTestServer) -> None:
    emails = seed(app, 4)
    edition_id = plan(app)
    with app.app_context():
        db.session.execute(
            update(Subscriber).where(Subscriber.email == emails[0]).values(status="unsubscribed")
        )
        db.session.add(Suppression(address_hash=address_hash(emails[1]), reason="complained"))
        db.session.commit()
    send_until_done(app, edition_id)
    assert received(smtp_server) == Counter(emails[2:])
    with app.app_context():
        rows = {
            email: error
            for email, error in db.session.execute(
                select(Subscriber.email, Delivery.last_error).join(Delivery)
            )
        }
    assert "unsubscribed" in (rows[emails[0]] or "")
    assert "suppressed" in (rows[emails[1]] or "")


def test_racing_workers_never_send_twice(app: Flask, smtp_server: SMTPTestServer) -> None:
    emails = seed(app, 60)
    edition_id = plan(app)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with app.app_context():
                # Every thread runs every batch: only claims decide who sends what.
                for first_id, last_id in ledger.batches(edition_id, 10) or []:
                    sending.send_batch(edition_id, first_id, last_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite") and errors:
        pytest.skip(f"SQLite serializes writers; a racing thread gave up: {errors[0]}")
    assert not errors, errors
    send_until_done(app, edition_id)
    assert received(smtp_server) == Counter(emails)


def test_crash_leaves_in_flight_rows_unknown_and_resends_only_untouched_ones(
    app: Flask, smtp_server: SMTPTestServer
) -> None:
    emails = seed(app, 10)
    edition_id = plan(app)
    with app.app_context():
        ids = db.session.scalars(
            select(Delivery.id).where(Delivery.edition_id == edition_id).order_by(Delivery.id)
        ).all()
        # A worker claimed the whole range, journalled the first two, then died.
        long_ago = utcnow() - timedelta(hours=1)
        db.session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(state="sending", claim="deadbeef", claimed_at=long_ago)
        )
        db.session.execute(
            update(Delivery).where(Delivery.id.in_(ids[:2])).values(state="attempting")
        )
        db.session.commit()
        assert ledger.recover() == {"requeued": 8, "unknown": 2}
    send_until_done(app, edition_id)
    final = states(app, edition_id)
    assert [final[e] for e in emails[:2]] == ["unknown", "unknown"]
    assert received(smtp_server) == Counter(emails[2:])
    with app.app_context():
        reasons = db.session.scalars(
            select(Delivery.last_error).where(Delivery.state == "unknown")
        ).all()
        assert all("may or may not" in (reason or "") for reason in reasons)


def test_second_digest_send_resumes_and_sends_nothing_twice(
    app: Flask, smtp_server: SMTPTestServer, runner: Any
) -> None:
    emails = seed(app, 12)
    first = runner.invoke(args=["digest", "send", "--frequency", "daily"])
    assert first.exit_code == 0, first.output
    assert "12 readers" in first.output
    again = runner.invoke(args=["digest", "send", "--frequency", "daily"])
    assert again.exit_code == 0, again.output
    assert "No new articles" in again.output
    assert received(smtp_server) == Counter(emails)


def test_a_claim_takes_one_chunk_in_id_order_and_skips_rows_claimed_elsewhere(
    app: Flask,
) -> None:
    seed(app, 40)
    edition_id = plan(app)
    with app.app_context():
        ids = db.session.scalars(
            select(Delivery.id).where(Delivery.edition_id == edition_id).order_by(Delivery.id)
        ).all()
        now = utcnow()
        first = ledger.claim(edition_id, ids[0], ids[-1], "aaaa", 5, now)
        db.session.commit()
        # Exactly the chunk asked for, however the database plans the statement.
        assert first == list(ids[:5])
        second = ledger.claim(edition_id, ids[0], ids[-1], "bbbb", 5, now)
        db.session.commit()
        assert second == list(ids[5:10])
        rows = dict(
            db.session.execute(
                select(Delivery.state, func.count())
                .where(Delivery.edition_id == edition_id)
                .group_by(Delivery.state)
            ).all()
        )
        assert rows == {"attempting": 10, "queued": 30}
        claims = Counter(
            db.session.scalars(select(Delivery.claim).where(Delivery.state == "attempting"))
        )
        assert claims == Counter({"aaaa": 5, "bbbb": 5})


@pytest.mark.parametrize("connections", [1, 3])
def test_a_batch_that_fails_midway_leaves_its_chunk_attempting_and_the_rest_queued(
    app: Flask, smtp_server: SMTPTestServer, monkeypatch: pytest.MonkeyPatch, connections: int
) -> None:
    app.config["SMTP_CONNECTIONS"] = connections
    emails = seed(app, 10)
    edition_id = plan(app)
    outcome = sending._outcome
    seen: list[int] = []

    def failing(delivery_id: int, *args: Any) -> None:
        seen.append(delivery_id)
        if len(seen) == 2:
            raise RuntimeError("the worker broke while sending")
        outcome(delivery_id, *args)

    monkeypatch.setattr(sending, "_outcome", failing)
    with app.app_context(), pytest.raises(RuntimeError, match="worker broke"):
        sending.send_batch(edition_id, *ledger.batches(edition_id, 10)[0])
    final = [states(app, edition_id)[email] for email in emails]
    # The chunk being handed over stays "attempting" (its journal tells a replay what went
    # out; recovery would call the rest unknown, never send it again); nothing past it was
    # claimed. Several connections are fed the next chunk ahead: that one is claimed too.
    if connections == 1:
        assert final == ["attempting"] * 4 + ["queued"] * 6
    else:
        # The other connections went on with what they held: those outcomes are written.
        assert set(final) <= {"attempting", "sent", "queued"} and "attempting" in final
        assert final == sorted(final, key=lambda state: state == "queued")
    with app.app_context():
        claims = db.session.scalars(select(Delivery.claim).where(Delivery.state == "queued")).all()
        assert claims == [None] * final.count("queued")
    assert len(smtp_server.messages) <= 4 + connections * 3
    assert len(set(received(smtp_server))) == len(smtp_server.messages)


def test_batches_deferred_at_the_same_moment_come_back_at_different_times(
    app: Flask, smtp_server: SMTPTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.config["RETRY_BASE_SECONDS"] = 600.0
    seed(app, 20)
    edition_id = plan(app)
    smtp_server.fail("rcpt", "451 4.7.1 greylisted, try again later")
    shares = iter([0.8, 1.2])
    monkeypatch.setattr(sending, "random", SimpleNamespace(uniform=lambda a, b: next(shares)))
    before = utcnow()
    send_all(app, edition_id)  # two batches of ten, each deferred whole
    with app.app_context():
        waits = [
            (at - before).total_seconds()
            for at in db.session.scalars(
                select(Delivery.not_before)
                .where(Delivery.edition_id == edition_id)
                .order_by(Delivery.id)
            )
        ]
    assert all(475 < wait < 490 for wait in waits[:10]), waits[:10]
    assert all(715 < wait < 730 for wait in waits[10:]), waits[10:]


def test_slot_markers_in_an_article_reach_no_mail_and_stop_no_batch(
    app: Flask, smtp_server: SMTPTestServer
) -> None:
    emails = seed(app, 6)
    with app.app_context():
        # Stored as a feed could have sent it before cleaning knew better.
        db.session.execute(
            update(Article)
            .where(Article.guid == "urn:test:0")
            .values(
                title="Budget \ue000unsubscribe_url\ue001 passes", summary="<p>\ue000x\ue001</p>"
            )
        )
        db.session.commit()
    edition_id = plan(app)
    send_all(app, edition_id)
    assert set(states(app, edition_id).values()) == {"sent"}
    assert received(smtp_server) == Counter(emails)
    for message in smtp_server.messages:
        parsed = message.parsed()
        parts = [part.get_content() for part in parsed.iter_parts()]
        assert not any("\ue000" in text or "\ue001" in text for text in [*parts, parsed["Subject"]])


def test_cleaning_drops_the_slot_markers_from_feed_text() -> None:
    from newsletter.articles.cleaning import make_record

    record = make_record(
        url="https://ledger.example/a",
        title="A \ue000greeting\ue001 title",
        category="Politics",
        summary="<p>\ue000x\ue001 text</p>",
    )
    assert "\ue000" not in record.title + record.summary and "\ue001" not in record.title


def test_a_reader_whose_mail_cannot_be_composed_is_failed_with_the_reason_and_the_rest_go(
    app: Flask, smtp_server: SMTPTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.digests.compose import Composer

    emails = seed(app, 6)
    edition_id = plan(app)
    compose = Composer.message

    def broken_for_one(self: Composer, reader: Any) -> Any:
        if reader.email == emails[2]:
            raise KeyError("greeting")
        return compose(self, reader)

    monkeypatch.setattr(Composer, "message", broken_for_one)
    send_all(app, edition_id)
    final = states(app, edition_id)
    assert final[emails[2]] == "failed"
    assert [final[e] for e in emails if e != emails[2]] == ["sent"] * 5
    assert received(smtp_server) == Counter(e for e in emails if e != emails[2])
    with app.app_context():
        reason = db.session.scalar(select(Delivery.last_error).where(Delivery.state == "failed"))
    assert reason is not None and "could not be composed" in reason
