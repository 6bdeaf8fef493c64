"""Digests at each reader's own DIGEST_HOUR (SEND_IN_READER_TIME): windows, release, recovery,
and one digest a day whatever the clocks do."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import select, update

from newsletter import create_app
from newsletter.celery_app import beat_schedule
from newsletter.db.models import Delivery, Edition, SendWindow, Subscriber
from newsletter.digests import ledger, planning, sending, windows
from newsletter.errors import ConfigError
from newsletter.extensions import db
from newsletter.mail.backends import MemoryBackend
from newsletter.mail.message import OutgoingMessage
from tests.conftest import _fresh_schema, base_config, with_config
from tests.support.clock import FakeClock
from tests.support.digest_helpers import add_article, add_reader, parse

READER_TIME = {"SEND_IN_READER_TIME": True, "BATCH_SIZE": 2}
UTC_7 = datetime(2027, 1, 12, 7, 0, tzinfo=UTC)  # a Tuesday in winter, beat's daily moment


def reader_in(app: Flask, email: str, zone: str | None) -> None:
    add_reader(app, email)
    with app.app_context():
        db.session.execute(
            update(Subscriber).where(Subscriber.email == email).values(timezone=zone)
        )
        db.session.commit()


def rows(app: Flask, edition_id: int) -> dict[str, tuple[int, str, datetime | None]]:
    """Each reader's ledger row: id, state and not_before."""
    with app.app_context():
        found = db.session.execute(
            select(Subscriber.email, Delivery.id, Delivery.state, Delivery.not_before)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.edition_id == edition_id)
        )
        return {email: (did, state, at) for email, did, state, at in found}


def window_rows(app: Flask, edition_id: int) -> list[tuple[datetime, int, int, int, bool]]:
    with app.app_context():
        found = db.session.scalars(
            select(SendWindow)
            .where(SendWindow.edition_id == edition_id)
            .order_by(SendWindow.opens_at)
        )
        return [
            (w.opens_at, w.first_id, w.last_id, w.readers, w.released_at is not None) for w in found
        ]


def start(app: Flask) -> int:
    with app.app_context():
        started = sending.start("daily")
        assert started is not None
        return started.edition_id


def release(app: Flask) -> int:
    with app.app_context():
        return sending.release_windows()


def to(outbox: list[OutgoingMessage]) -> list[str]:
    return [message.recipient for message in outbox]


# ---- when each zone's window opens (pure)


@pytest.mark.parametrize(
    ("zone", "planned", "hour", "expected"),
    [
        # West of a UTC site: the same day, at their 7:00.
        ("America/New_York", "2027-01-12T07:00", 7, "2027-01-12T12:00"),
        ("America/New_York", "2027-07-12T07:00", 7, "2027-07-12T11:00"),
        # East of it: 7:00 on their next day, the first 7:00 after planning.
        ("Europe/Berlin", "2027-01-12T07:00", 7, "2027-01-13T06:00"),
        ("Asia/Tokyo", "2027-01-12T07:00", 7, "2027-01-12T22:00"),
        # A zone that is the site's own at this time of year but ahead of it in summer.
        ("Europe/London", "2027-01-12T07:00", 7, "2027-01-13T07:00"),
        ("Europe/London", "2027-07-12T07:00", 7, "2027-07-13T06:00"),
        # 2:00 does not exist in New York on 14 March 2027: the next valid moment, 3:00 EDT.
        ("America/New_York", "2027-03-14T02:00", 2, "2027-03-14T07:00"),
        ("America/New_York", "2027-03-13T02:00", 2, "2027-03-13T07:00"),
        ("America/New_York", "2027-03-15T02:00", 2, "2027-03-15T06:00"),
        # 2:00 happens twice in Berlin on 31 October 2027: the first one (CEST).
        ("Europe/Berlin", "2027-10-30T02:00", 2, "2027-10-31T00:00"),
        # And 2:00 does not exist there on 28 March 2027: 3:00 CEST.
        ("Europe/Berlin", "2027-03-27T02:00", 2, "2027-03-28T01:00"),
        # Kathmandu is 5:45 ahead: windows open on the quarter hour.
        ("Asia/Kathmandu", "2027-01-12T07:00", 7, "2027-01-13T01:15"),
    ],
)
def test_a_zones_window_opens_at_its_next_digest_hour(
    zone: str, planned: str, hour: int, expected: str
) -> None:
    at = datetime.fromisoformat(planned).replace(tzinfo=UTC)
    assert windows.opening(zone, "UTC", hour, at) == datetime.fromisoformat(expected).replace(
        tzinfo=UTC
    )


def test_a_window_never_opens_before_its_edition_was_planned() -> None:
    late = datetime(2027, 1, 12, 15, 30, tzinfo=UTC)  # `digest send` by hand, in the afternoon
    assert windows.opening("UTC", "UTC", 7, late) == late
    assert windows.opening("America/New_York", "UTC", 7, late) == late
    assert windows.opening("Asia/Tokyo", "UTC", 7, late) == datetime(2027, 1, 12, 22, tzinfo=UTC)


# ---- planning


@with_config(**READER_TIME)
def test_planning_gives_each_row_its_readers_hour_and_each_window_one_id_range(
    app: Flask, clock: FakeClock, outbox: list[OutgoingMessage]
) -> None:
    clock.set(UTC_7)
    add_article(app, "Council approves the bridge")
    for email, zone in [
        ("tokyo@example.org", "Asia/Tokyo"),
        ("site@example.org", None),
        ("ny1@example.org", "America/New_York"),
        ("berlin@example.org", "Europe/Berlin"),
        ("ny2@example.org", "America/New_York"),
        ("nowhere@example.org", "Mars/Olympus_Mons"),  # not a zone: the site's
        ("utc@example.org", "UTC"),
    ]:
        reader_in(app, email, zone)

    edition_id = start(app)

    found = rows(app, edition_id)
    opens = {email: at for email, (_, _, at) in found.items()}
    assert opens == {
        "site@example.org": UTC_7,
        "nowhere@example.org": UTC_7,
        "utc@example.org": UTC_7,
        "ny1@example.org": datetime(2027, 1, 12, 12, tzinfo=UTC),
        "ny2@example.org": datetime(2027, 1, 12, 12, tzinfo=UTC),
        "tokyo@example.org": datetime(2027, 1, 12, 22, tzinfo=UTC),
        "berlin@example.org": datetime(2027, 1, 13, 6, tzinfo=UTC),
    }
    # Ids follow the openings: each window is one range, in the order they open.
    by_id = sorted(found.values())
    assert [at for _, _, at in by_id] == sorted(at for _, _, at in by_id)
    assert [
        (at, last - first + 1, n, out) for at, first, last, n, out in window_rows(app, edition_id)
    ] == [
        (UTC_7, 3, 3, True),
        (datetime(2027, 1, 12, 12, tzinfo=UTC), 2, 2, False),
        (datetime(2027, 1, 12, 22, tzinfo=UTC), 1, 1, False),
        (datetime(2027, 1, 13, 6, tzinfo=UTC), 1, 1, False),
    ]
    # Only the window open now went out.
    assert sorted(to(outbox)) == ["nowhere@example.org", "site@example.org", "utc@example.org"]
    assert {state for email, (_, state, _) in found.items() if "ny" in email} == {"queued"}


def test_without_the_setting_every_row_goes_at_once_as_before(
    app: Flask, clock: FakeClock, outbox: list[OutgoingMessage]
) -> None:
    clock.set(UTC_7)
    add_article(app, "Council approves the bridge")
    reader_in(app, "ny@example.org", "America/New_York")
    reader_in(app, "berlin@example.org", "Europe/Berlin")
    edition_id = start(app)
    assert {at for _, _, at in rows(app, edition_id).values()} == {None}
    assert window_rows(app, edition_id) == []
    assert sorted(to(outbox)) == ["berlin@example.org", "ny@example.org"]
    assert "release-send-windows" not in beat_schedule(app)


@with_config(**READER_TIME)
def test_beat_releases_the_windows_every_minute(app: Flask) -> None:
    entry = beat_schedule(app)["release-send-windows"]
    assert entry["task"] == "newsletter.tasks.release_send_windows"
    assert entry["schedule"].minute == set(range(60))


# ---- release


@with_config(**READER_TIME)
def test_rows_wait_for_their_window_and_go_when_it_opens_once(
    app: Flask, clock: FakeClock, outbox: list[OutgoingMessage]
) -> None:
    clock.set(UTC_7)
    add_article(app, "Council approves the bridge")
    for index in range(3):
        reader_in(app, f"ny{index}@example.org", "America/New_York")
    reader_in(app, "berlin@example.org", "Europe/Berlin")
    edition_id = start(app)
    assert outbox == []

    clock.set(datetime(2027, 1, 12, 11, 59, 59, tzinfo=UTC))
    assert release(app) == 0
    with app.app_context():
        # Even a batch told to take the whole ledger finds nothing due yet.
        [(first, last)] = ledger.batches(edition_id, 100)
        assert sending.send_batch(edition_id, first, last).sent == 0
    assert outbox == []

    clock.set(datetime(2027, 1, 12, 12, 0, tzinfo=UTC))
    assert release(app) == 1
    assert sorted(to(outbox)) == ["ny0@example.org", "ny1@example.org", "ny2@example.org"]
    [sent] = {parsedate_to_datetime(str(parse(m.data)["Date"])) for m in outbox}
    assert sent.astimezone(ZoneInfo("America/New_York")).hour == 7
    # Released once: the next ticks, a second dispatch and a resumed send add nothing.
    clock.advance(minutes=1)
    assert release(app) == 0
    with app.app_context():
        sending.dispatch(edition_id)
        assert sending.start("daily").resumed  # type: ignore[union-attr]
    assert len(outbox) == 3

    clock.set(datetime(2027, 1, 13, 6, 0, tzinfo=UTC))
    assert release(app) == 1
    assert to(outbox)[3:] == ["berlin@example.org"]
    with app.app_context():
        assert db.session.get(Edition, edition_id).state == "done"  # type: ignore[union-attr]


@with_config(**READER_TIME)
def test_an_unsubscribe_while_waiting_wins(
    app: Flask, clock: FakeClock, outbox: list[OutgoingMessage]
) -> None:
    clock.set(UTC_7)
    add_article(app, "Council approves the bridge")
    reader_in(app, "ny@example.org", "America/New_York")
    edition_id = start(app)
    with app.app_context():
        db.session.execute(update(Subscriber).values(status="unsubscribed"))
        db.session.commit()
    clock.set(datetime(2027, 1, 12, 12, tzinfo=UTC))
    release(app)
    assert outbox == []
    assert rows(app, edition_id)["ny@example.org"][1] == "skipped"


# ---- recovery


@with_config(**READER_TIME, LEASE_SECONDS=60)
def test_recovery_sends_no_waiting_row_early_and_takes_none_for_unattended(
    app: Flask, clock: FakeClock, outbox: list[OutgoingMessage]
) -> None:
    clock.set(UTC_7)
    add_article(app, "Council approves the bridge")
    reader_in(app, "site@example.org", None)
    for index in range(3):
        reader_in(app, f"berlin{index}@example.org", "Europe/Berlin")
    edition_id = start(app)
    assert to(outbox) == ["site@example.org"]

    # Hours later, the lease long gone by, the queue idle: still not the Berliners' hour.
    clock.set(datetime(2027, 1, 13, 5, 59, tzinfo=UTC))
    stale = clock.now - timedelta(seconds=60)
    with app.app_context():
        found = sending.recover()
        assert found["queued"] == 0
        opened = windows.opened(edition_id, clock.now)
        assert ledger.unattended(edition_id, 2, stale, queue_idle=True, opened=opened) == []
    assert to(outbox) == ["site@example.org"]
    assert {state for _, state, _ in rows(app, edition_id).values()} == {"sent", "queued"}


@with_config(**READER_TIME, LEASE_SECONDS=60)
def test_a_window_whose_release_was_missed_is_queued_by_the_recovery_pass(
    app: Flask, clock: FakeClock, outbox: list[OutgoingMessage]
) -> None:
    clock.set(UTC_7)
    add_article(app, "Council approves the bridge")
    reader_in(app, "ny@example.org", "America/New_York")
    reader_in(app, "berlin@example.org", "Europe/Berlin")
    start(app)
    clock.set(datetime(2027, 1, 12, 13, 30, tzinfo=UTC))  # beat was down at 12:00
    with app.app_context():
        sending.recover()
    assert to(outbox) == ["ny@example.org"]


@with_config(**READER_TIME, LEASE_SECONDS=60)
def test_an_open_window_whose_tasks_were_lost_is_queued_again_but_only_it(
    app: Flask, clock: FakeClock
) -> None:
    clock.set(UTC_7)
    add_article(app, "Council approves the bridge")
    for index in range(3):
        reader_in(app, f"ny{index}@example.org", "America/New_York")
    reader_in(app, "berlin@example.org", "Europe/Berlin")
    with app.app_context():
        edition = planning.plan("daily")  # planned, nothing queued: say the broker lost it all
        assert edition is not None
        edition_id = edition.id
        windows.release_due(datetime(2027, 1, 12, 12, tzinfo=UTC))
        db.session.commit()
    found = rows(app, edition_id)
    clock.set(datetime(2027, 1, 12, 12, 30, tzinfo=UTC))
    stale = clock.now - timedelta(seconds=60)
    with app.app_context():
        opened = windows.opened(edition_id, clock.now)
        assert opened is not None
        # Rows still carrying their window's opening are untried, not overdue retries: only
        # an idle queue says their tasks are gone, and then every open window, none other.
        assert ledger.unattended(edition_id, 10, stale, queue_idle=False, opened=opened) == []
        ranges = ledger.unattended(edition_id, 10, stale, queue_idle=True, opened=opened)
    ny = sorted(did for email, (did, _, _) in found.items() if email.startswith("ny"))
    assert ranges == [(ny[0], ny[-1])]
    assert found["berlin@example.org"][0] > ny[-1]


# ---- editions day after day


@with_config(**READER_TIME)
def test_the_next_days_edition_is_planned_while_the_last_ones_windows_still_wait(
    app: Flask, clock: FakeClock, outbox: list[OutgoingMessage]
) -> None:
    clock.set(UTC_7)
    add_article(app, "Monday's story")
    reader_in(app, "site@example.org", None)
    reader_in(app, "london@example.org", "Europe/London")  # ahead of UTC in summer
    first = start(app)
    clock.set(UTC_7 + timedelta(days=1))
    add_article(app, "Tuesday's story")
    # The first edition's London window opens at this very moment: it does not hold the
    # second edition back, and nobody gets two.
    second = start(app)
    assert second != first
    release(app)
    assert sorted(to(outbox)) == ["london@example.org", "site@example.org", "site@example.org"]
    with app.app_context():
        assert db.session.get(Edition, first).state == "done"  # type: ignore[union-attr]


def _day_by_day(
    app: Flask, clock: FakeClock, site: str, hour: int, first: date, days: int
) -> dict[str, list[tuple[datetime, int]]]:
    """Live ``days`` days from ``first`` as beat would: an edition planned at DIGEST_HOUR in
    the site's zone each day, the windows released each quarter of an hour. Each reader's
    digests as (moment sent, edition)."""
    site_zone = ZoneInfo(site)
    plans = [windows.local_hour(site_zone, first + timedelta(days=d), hour) for d in range(days)]
    MemoryBackend.outbox.clear()
    clock.set(plans[0] - timedelta(hours=1))
    end = plans[-1] + timedelta(days=2)
    while clock.now < end:
        if clock.now in plans:
            add_article(app, f"News of {clock.now:%d %B}", minutes_ago=5)
            start(app)
        release(app)
        clock.advance(minutes=15)
    got: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for message in MemoryBackend.outbox:
        parsed = parse(message.data)
        edition = int(str(parsed["Message-ID"]).split(".")[1])
        got[message.recipient].append((parsedate_to_datetime(str(parsed["Date"])), edition))
    return got


# A spring-forward and a fall-back day in each zone, with DIGEST_HOUR inside the hour the
# clocks skip or repeat (2) and outside it (7), against sites on either side of the reader.
DST_DAYS = [
    ("UTC", "America/New_York", 7, date(2027, 3, 12)),
    ("UTC", "America/New_York", 2, date(2027, 3, 12)),
    ("UTC", "America/New_York", 2, date(2027, 11, 5)),
    ("UTC", "Europe/Berlin", 7, date(2027, 3, 26)),
    ("UTC", "Europe/Berlin", 2, date(2027, 3, 26)),
    ("UTC", "Europe/Berlin", 7, date(2027, 10, 29)),
    ("UTC", "Europe/Berlin", 2, date(2027, 10, 29)),
    ("UTC", "Europe/London", 7, date(2027, 10, 29)),
    ("UTC", "Europe/London", 7, date(2027, 3, 26)),
    ("Europe/Berlin", "America/New_York", 7, date(2027, 3, 12)),
    ("Europe/Berlin", "Europe/London", 2, date(2027, 10, 29)),
    ("America/New_York", "Europe/Berlin", 7, date(2027, 3, 26)),
    ("America/New_York", "Europe/Berlin", 7, date(2027, 3, 12)),
]


@pytest.mark.parametrize(("site", "zone", "hour", "first"), DST_DAYS)
def test_one_digest_a_day_at_the_readers_hour_across_a_daylight_saving_change(
    site: str, zone: str, hour: int, first: date, sqlite_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    # On SQLite only: the arithmetic is the same on either database, whose ledger statements
    # the other tests here run on both.
    settings = {**READER_TIME, "TIMEZONE": site, "DIGEST_HOUR": hour}
    app = create_app({**base_config(sqlite_url, tmp_path), **settings})
    _fresh_schema(app)
    reader_in(app, "reader@example.org", zone)
    reader_in(app, "site@example.org", None)
    days = 4  # the change falls on the third day

    got = _day_by_day(app, clock, site, hour, first, days)

    here = ZoneInfo(zone)
    mine = got["reader@example.org"]
    # Every edition, once, in order; one per day of the reader's calendar, each at the first
    # moment of DIGEST_HOUR there (or just after it, when the clocks skip it).
    editions = [edition for _, edition in mine]
    assert len(editions) == days and editions == sorted(set(editions)), mine
    local_days = [sent.astimezone(here).date() for sent, _ in mine]
    assert len(set(local_days)) == days, [str(d) for d in local_days]
    assert all((b - a).days == 1 for a, b in pairwise(local_days)), local_days
    for sent, _ in mine:
        assert sent == windows.local_hour(here, sent.astimezone(here).date(), hour), sent
    # And the site's own readers, at the site's hour each day.
    theirs = got["site@example.org"]
    assert [sent for sent, _ in theirs] == [
        windows.local_hour(ZoneInfo(site), first + timedelta(days=d), hour) for d in range(days)
    ]
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# ---- what an operator sees


@with_config(**READER_TIME)
def test_digest_status_says_how_many_wait_for_their_hour_and_when_the_next_window_opens(
    app: Flask, clock: FakeClock
) -> None:
    clock.set(UTC_7)
    add_article(app, "Council approves the bridge")
    reader_in(app, "site@example.org", None)
    reader_in(app, "ny@example.org", "America/New_York")
    reader_in(app, "ny2@example.org", "America/New_York")
    reader_in(app, "tokyo@example.org", "Asia/Tokyo")
    start(app)
    output = app.test_cli_runner().invoke(args=["digest", "status"]).output
    assert re.search(r"sent +1\n", output) and re.search(r"queued +3\n", output), output
    assert (
        "Waiting for their readers' hour: 3 rows in 2 windows; "
        "the next opens at 2027-01-12 12:00 UTC." in output
    )
    clock.set(datetime(2027, 1, 12, 23, 0, tzinfo=UTC))
    release(app)
    output = app.test_cli_runner().invoke(args=["digest", "status"]).output
    assert "Waiting for their readers' hour" not in output
    assert re.search(r"sent +4\n", output), output


@with_config(**READER_TIME)
def test_digest_send_without_a_broker_sends_what_is_due_and_says_what_waits(
    app: Flask, clock: FakeClock, outbox: list[OutgoingMessage]
) -> None:
    clock.set(UTC_7)
    add_article(app, "Council approves the bridge")
    reader_in(app, "site@example.org", None)
    reader_in(app, "ny@example.org", "America/New_York")
    result = app.test_cli_runner().invoke(args=["digest", "send", "--frequency", "daily"])
    assert result.exit_code == 0, result.output
    assert to(outbox) == ["site@example.org"]
    assert "Waiting for their readers' hour: 1 row in 1 window" in result.output
    assert "run `newsletter digest send` again then" in result.output
    clock.set(datetime(2027, 1, 12, 12, 0, tzinfo=UTC))
    result = app.test_cli_runner().invoke(args=["digest", "send", "--frequency", "daily"])
    assert "Resuming edition" in result.output
    assert to(outbox) == ["site@example.org", "ny@example.org"]


def test_the_setting_is_true_or_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="NEWSLETTER_SEND_IN_READER_TIME: must be true or false"):
        create_app({**base_config("sqlite://", tmp_path), "SEND_IN_READER_TIME": "yes"})
    monkeypatch.setenv("NEWSLETTER_SEND_IN_READER_TIME", "true")
    assert create_app(base_config("sqlite://", tmp_path)).config["SEND_IN_READER_TIME"] is True
