"""The dashboard's numbers are the database's: readers by state, growth and churn, and the
last editions' outcomes; its charts carry their numbers in words and tables too."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from newsletter.db.models import BounceEvent, Delivery, Edition, Subscriber, Suppression
from newsletter.digests import outcomes, planning
from newsletter.extensions import db
from newsletter.readers import stats
from newsletter.readers.stats import Day, Movement
from newsletter.web.admin import charts
from tests.support.console import OWNER, add_operator, query_plans, seed_history, sign_in


@pytest.fixture
def owner(app: Flask, client: FlaskClient) -> FlaskClient:
    add_operator(app, OWNER, "owner")
    assert sign_in(client, OWNER).status_code == 303
    return client


def number(text: str) -> int:
    return int(text.replace(",", "").replace("+", "").strip())


def test_readers_by_state_growth_and_churn_are_the_databases(
    app: Flask, owner: FlaskClient
) -> None:
    history = seed_history(app)
    html = owner.get("/admin/").get_data(as_text=True)
    with app.app_context():
        readers = db.session.execute(
            select(Subscriber.status, Subscriber.confirmed_at, Subscriber.unsubscribed_at)
        ).all()
        suppressions = db.session.execute(select(Suppression.reason, Suppression.created_at)).all()
    shown = dict(re.findall(r'<tr id="state-(\w+)">.*?data-count="(\d+)"', html, re.S))
    for status in ("pending", "active", "unsubscribed", "bounced", "complained"):
        assert int(shown[status]) == sum(1 for r in readers if r.status == status), status
    assert number(re.search(r'id="readers-total">([\d,]+)<', html)[1]) == len(readers)

    # The window: the last 30 days, today included, in the site's zone (UTC here).
    first = history.now.date() - timedelta(days=29)
    joined = sum(1 for r in readers if r.confirmed_at and r.confirmed_at.date() >= first)
    unsubscribed = sum(
        1
        for r in readers
        if r.unsubscribed_at and r.confirmed_at and r.unsubscribed_at.date() >= first
    )
    suppressed = sum(
        1
        for s in suppressions
        if s.reason in ("bounced", "complained") and s.created_at.date() >= first
    )
    assert joined and unsubscribed and suppressed  # the seed moves in every way
    assert number(re.search(r'<dd id="joined">([^<]+)<', html)[1]) == joined
    assert number(re.search(r'<dd id="left">([^<]+)<', html)[1]) == unsubscribed + suppressed
    assert number(re.search(r'<dd id="net">([^<]+)<', html)[1]) == joined - (
        unsubscribed + suppressed
    )
    # The table under the chart adds up to the same figures.
    table = re.search(r'<table id="movement-table">(.*?)</table>', html, re.S)[1]
    rows = re.findall(
        r"<tr><th scope=\"row\"[^>]*>[^<]+</th>((?:<td[^>]*>[^<]*</td>)+)</tr>", table
    )
    cells = [[number(v) for v in re.findall(r">([^<]*)</td>", row)] for row in rows]
    assert len(cells) == 30
    assert sum(row[0] for row in cells) == joined
    assert sum(row[1] + row[2] + row[3] for row in cells) == unsubscribed + suppressed
    active_now = sum(1 for r in readers if r.status == "active")
    assert cells[0][4] == active_now  # the newest day first


def test_the_last_editions_show_the_ledgers_outcomes(app: Flask, owner: FlaskClient) -> None:
    history = seed_history(app)
    html = owner.get("/admin/").get_data(as_text=True)
    with app.app_context():
        editions = db.session.execute(
            select(Edition.id, Edition.created_at).order_by(Edition.id)
        ).all()
        deliveries = db.session.execute(
            select(Delivery.id, Delivery.edition_id, Delivery.subscriber_id, Delivery.state)
        ).all()
        bounces = db.session.execute(select(BounceEvent.delivery_id, BounceEvent.kind)).all()
        left = dict(
            db.session.execute(
                select(Subscriber.id, Subscriber.unsubscribed_at).where(
                    Subscriber.unsubscribed_at.is_not(None)
                )
            ).all()
        )
    assert [e.id for e in editions] == history.editions
    of_delivery = {d.id: d.edition_id for d in deliveries}
    for index, (edition_id, created) in enumerate(editions):
        row = re.search(rf'<tr id="edition-{edition_id}">(.*?)</tr>', html, re.S)
        assert row, f"edition {edition_id} is not listed"
        shown = {k: number(v) for k, v in re.findall(r'data-name="(\w+)"[^>]*>([^<]+)<', row[1])}
        mine = [d for d in deliveries if d.edition_id == edition_id]
        until = editions[index + 1].created_at if index + 1 < len(editions) else None
        kinds = [kind for delivery_id, kind in bounces if of_delivery[delivery_id] == edition_id]
        expected = {
            "readers": len(mine),
            "sent": sum(1 for d in mine if d.state == "sent"),
            "failed": sum(1 for d in mine if d.state == "failed"),
            "unknown": sum(1 for d in mine if d.state == "unknown"),
            "bounced": sum(1 for kind in kinds if kind != "complaint"),
            "complained": sum(1 for kind in kinds if kind == "complaint"),
            "unsubscribed": sum(
                1
                for d in mine
                if d.state == "sent"
                and d.subscriber_id in left
                and left[d.subscriber_id] >= created
                and (until is None or left[d.subscriber_id] < until)
            ),
        }
        assert shown == expected, edition_id
    assert sum(number(v) for v in re.findall(r'data-name="unsubscribed"[^>]*>([^<]+)<', html))
    assert f'href="/admin/editions/{history.editions[-1]}"' in html


@pytest.mark.parametrize("days", [90, 365])
def test_the_window_is_chosen_by_link(app: Flask, owner: FlaskClient, days: int) -> None:
    seed_history(app, days=120)
    html = owner.get(f"/admin/?days={days}").get_data(as_text=True)
    assert f'href="/admin/?days={days}" aria-current="page"' in html
    table = re.search(r'<table id="movement-table">(.*?)</table>', html, re.S)[1]
    rows = table.count('<th scope="row"')
    assert rows == (90 if days == 90 else 53)  # a year is drawn week by week
    assert ("Joined and left per week" in html) is (days == 365)
    with app.app_context():
        confirmed = db.session.scalar(
            select(func.count()).where(Subscriber.confirmed_at.is_not(None))
        )
    if days == 365:  # every confirmation of the seed is within the year
        assert number(re.search(r'<dd id="joined">([^<]+)<', html)[1]) == confirmed


@pytest.mark.parametrize("days", ["7", "abc", "-30", "30.0", "³0", "0030"])
def test_another_window_is_refused_by_name(owner: FlaskClient, days: str) -> None:
    answer = owner.get(f"/admin/?days={days}")
    assert answer.status_code == 400
    assert "days: must be 30, 90 or 365" in answer.get_data(as_text=True)


def test_the_charts_say_what_they_show(app: Flask, owner: FlaskClient) -> None:
    seed_history(app)
    html = owner.get("/admin/").get_data(as_text=True)
    for name in ("active", "bars"):
        svg = re.search(rf'<svg [^>]*aria-labelledby="{name}-title {name}-desc"[^>]*>', html)
        assert svg and 'role="img"' in svg[0], name
        assert re.search(rf'<title id="{name}-title">[^<]+</title>', html)
        assert re.search(rf'<desc id="{name}-desc">[^<]*\d[^<]*</desc>', html)
    # Each bar names its day and count when pointed at.
    assert re.search(
        r"<rect class=\"joined\"[^>]*><title>\d{4}-\d\d-\d\d: \d+ joined</title>", html
    )
    # No inline style: the page's policy would block it (every style is in the nonced sheet).
    assert " style=" not in html


def test_an_empty_list_draws_empty_charts(owner: FlaskClient) -> None:
    html = owner.get("/admin/?days=365").get_data(as_text=True)
    assert '<dd id="joined">0</dd>' in html and '<dd id="churn">\u2013</dd>' in html
    assert "No edition has been sent yet." in html


# ---- the pure parts


def _movement(values: list[tuple[int, int, int, int]], active: int) -> Movement:
    start = date(2026, 1, 1)
    days = [Day(start + timedelta(days=i), *counts) for i, counts in enumerate(values)]
    return Movement(days, active)


def test_active_readers_are_worked_back_from_todays_count() -> None:
    movement = _movement([(5, 1, 0, 0), (0, 0, 2, 1), (3, 0, 0, 0)], active=100)
    assert movement.active_by_day() == [100, 97, 100]
    assert (movement.joined, movement.left, movement.net) == (8, 4, 4)
    assert movement.active_at_start == 96
    assert movement.churn_rate == pytest.approx(4 / 96)


def test_a_year_is_drawn_in_weeks_ending_today() -> None:
    movement = _movement([(1, 0, 0, 0)] * 365, active=500)
    buckets = charts.buckets(movement)
    assert len(buckets) == 53
    assert buckets[-1].last == movement.days[-1].day
    assert buckets[0].first == buckets[0].last == movement.days[0].day  # the odd day out
    assert all(b.joined == 7 for b in buckets[1:]) and buckets[0].joined == 1
    assert buckets[-1].active == 500 and buckets[-2].active == 493


def test_bars_share_one_scale_above_and_below_the_axis() -> None:
    series = charts.buckets(_movement([(6, 0, 0, 0), (0, 1, 1, 0), (2, 0, 0, 0)], active=10))
    drawn = charts.bars(series)
    assert (drawn.most_joined, drawn.most_left) == (6, 2)
    assert drawn.axis_y == pytest.approx(75.0)
    joined = [r for r in drawn.rects if r.kind == "joined"]
    assert [r.height for r in joined] == pytest.approx([75.0, 25.0])
    below = [r for r in drawn.rects if r.kind != "joined"]
    assert [(r.kind, r.y, r.height) for r in below] == [
        ("unsubscribed", 75.0, 12.5),
        ("bounced", 87.5, 12.5),
    ]
    flat = charts.line(series)
    assert flat.low < flat.high


def test_growth_is_counted_by_the_sites_calendar_day(app: Flask) -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    with app.app_context():
        db.session.add_all(
            [
                # 03:00 UTC is still the evening before in New York.
                Subscriber(
                    email="a@example.org",
                    status="active",
                    confirmed_at=datetime(2026, 12, 4, 3, 0, tzinfo=UTC),
                ),
                Subscriber(
                    email="b@example.org",
                    status="active",
                    confirmed_at=datetime(2026, 12, 4, 6, 0, tzinfo=UTC),
                ),
                Subscriber(
                    email="c@example.org",
                    status="unsubscribed",
                    confirmed_at=datetime(2026, 11, 1, tzinfo=UTC),
                    unsubscribed_at=datetime(2026, 12, 3, 12, 0, tzinfo=UTC),
                ),
                Suppression(
                    address_hash="0" * 64,
                    reason="bounced",
                    created_at=datetime(2026, 12, 4, 4, 59, tzinfo=UTC),
                ),
            ]
        )
        db.session.commit()
        moved = stats.movement(3, now, ZoneInfo("America/New_York"))
    assert [(d.day.isoformat(), d.joined, d.unsubscribed, d.bounced) for d in moved.days] == [
        ("2026-12-02", 0, 0, 0),
        ("2026-12-03", 1, 1, 1),
        ("2026-12-04", 1, 0, 0),
    ]
    assert moved.active_now == 2


def test_the_dashboards_queries_read_indexes_not_the_tables(app: Flask) -> None:
    """At a million readers the dashboard reads index ranges: readers by the day they joined
    or left, an edition's rows by state, and only the few who unsubscribed after it."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("PostgreSQL plans small tables as sequential scans; SQLite shows the index")
    seed_history(app)

    def dashboard() -> None:
        stats.movement(90)
        outcomes.of_editions(planning.recent(10))

    plans = query_plans(app, dashboard)
    joined = "\n".join(plans)
    for index in (
        "ix_subscriber_confirmed_at",
        "ix_subscriber_unsubscribed_at",
        "ix_bounce_event_received_at",
        "ix_delivery_edition_state_id",  # counting by state: an index, not the rows
    ):
        assert index in joined, index
    # Unsubscribes: the few who left, each looked up in the edition's rows.
    assert re.search(
        r"SEARCH delivery USING INDEX \w+ \(edition_id=\? AND subscriber_id=\?\)", joined
    )
    for plan in plans:
        # A full pass over readers or the ledger (a million rows each) is what must not be.
        assert not re.search(r"^SCAN (subscriber|delivery)\b(?! USING)", plan, re.M), plan
