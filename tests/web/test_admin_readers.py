"""Readers in the console: search by address or name a page at a time, a reader's page,
and the owner's export and erasure."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from newsletter.clock import utcnow
from newsletter.db.models import (
    AuditEvent,
    ConsentEvent,
    Delivery,
    Edition,
    Subscriber,
    SubscriberTopic,
    Suppression,
)
from newsletter.errors import InvalidCursor
from newsletter.extensions import db
from newsletter.readers import directory, privacy
from newsletter.readers.addresses import address_hash
from tests.support.console import (
    EDITOR,
    OWNER,
    add_operator,
    csrf_of,
    post,
    query_plans,
    sign_in,
)


@pytest.fixture
def owner(app: Flask, client: FlaskClient) -> FlaskClient:
    add_operator(app, OWNER, "owner")
    assert sign_in(client, OWNER).status_code == 303
    return client


def add_readers(app: Flask, readers: list[tuple[str, str]]) -> None:
    with app.app_context():
        for email, name in readers:
            db.session.add(Subscriber(email=email, name=name, status="active"))
        db.session.commit()


def result_addresses(html: str) -> list[str]:
    return re.findall(r'<a href="/admin/readers/[^"]+">([^<]+)</a>', html)


def next_link(html: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def test_search_finds_addresses_then_names_a_page_at_a_time(app: Flask, owner: FlaskClient) -> None:
    by_address = [(f"ann.{n:03d}@example.org", f"Reader {n}") for n in range(70)]
    by_name = [
        (f"reader{n:03d}@example.net", f"Ann{'e' if n % 2 else ''} Other {n}") for n in range(40)
    ]
    both = [("anna@example.com", "Anna Both")]  # matches twice, listed once
    others = [(f"bob{n}@example.org", "Bob") for n in range(30)]
    add_readers(app, by_address + by_name + both + others)

    pages: list[list[str]] = []
    url: str | None = "/admin/readers?q=ANN"
    while url:
        answer = owner.get(url)
        assert answer.status_code == 200
        html = answer.get_data(as_text=True)
        pages.append(result_addresses(html))
        url = next_link(html)
    assert [len(page) for page in pages] == [50, 50, 11]
    found = [address for page in pages for address in page]
    addresses = sorted([a for a, _ in by_address] + ["anna@example.com"])
    names = [a for a, _ in sorted(by_name, key=lambda r: (r[1].lower(), r[0]))]
    # Addresses first in address order, then names in name order, nobody twice.
    assert found[: len(addresses)] == addresses
    assert sorted(found[len(addresses) :]) == sorted(names)
    assert len(found) == len(set(found)) == 111
    assert "Bob" not in "".join(found)


def test_a_page_filled_by_addresses_exactly_continues_with_names(app: Flask) -> None:
    add_readers(app, [("max@example.org", "Zed"), ("mia@example.org", "Zoe")])
    add_readers(app, [("zz@example.org", "Maxine"), ("yy@example.org", "Max")])
    with app.app_context():
        first = directory.search("m", limit=2)
        assert [r.email for r in first.readers] == ["max@example.org", "mia@example.org"]
        assert first.after is not None
        second = directory.search("m", first.after, limit=2)
        assert [r.name for r in second.readers] == ["Max", "Maxine"]
        assert second.after is None
        newest = directory.search("", limit=3)
        assert [r.email for r in newest.readers] == [
            "yy@example.org",
            "zz@example.org",
            "mia@example.org",
        ]
        rest = directory.search("", newest.after, limit=3)
        assert [r.email for r in rest.readers] == ["max@example.org"] and rest.after is None


@pytest.mark.parametrize("cursor", ["garbage!", "WyJ4Il0", "WyJhIiwgMV0", "e30"])
def test_a_tampered_page_link_is_refused_by_name(
    app: Flask, owner: FlaskClient, cursor: str
) -> None:
    answer = owner.get(f"/admin/readers?q=ann&after={cursor}")
    assert answer.status_code == 400
    assert "after: this page link is not valid" in answer.get_data(as_text=True)
    with app.app_context(), pytest.raises(InvalidCursor):
        directory.search("ann", cursor)


def test_search_terms_and_names_are_shown_escaped(app: Flask, owner: FlaskClient) -> None:
    add_readers(app, [("x@example.org", "<b>Mallory</b>")])
    html = owner.get("/admin/readers?q=<b>").get_data(as_text=True)
    assert "<b>Mallory</b>" not in html and "&lt;b&gt;Mallory&lt;/b&gt;" in html
    assert "“&lt;b&gt;”" in html


def _reader_with_history(app: Flask) -> tuple[str, int]:
    """A reader with topics, consent lines, a delivery and a bounce; their uid and edition."""
    now = utcnow()
    with app.app_context():
        reader = Subscriber(
            email="pat@example.org",
            name="Pat Doe",
            status="active",
            frequency="daily",
            confirmed_at=now,
            alerts=False,
            timezone="Europe/Berlin",
        )
        reader.topics = ["politics", "culture"]
        db.session.add(reader)
        db.session.flush()
        for action in ("signup", "confirm"):
            db.session.add(
                ConsentEvent(
                    subscriber_id=reader.id,
                    action=action,
                    source=f"{action}-page",
                    ip="203.0.113.9",
                    detail={},
                )
            )
        edition = Edition(frequency="daily", subject="Morning briefing", covers_until=now)
        db.session.add(edition)
        db.session.flush()
        db.session.add(
            Delivery(edition_id=edition.id, subscriber_id=reader.id, state="sent", sent_at=now)
        )
        db.session.commit()
        return reader.uid, edition.id


def test_a_readers_page_shows_their_subscription_consent_and_deliveries(
    app: Flask, owner: FlaskClient
) -> None:
    uid, edition_id = _reader_with_history(app)
    html = owner.get(f"/admin/readers/{uid}").get_data(as_text=True)
    assert "pat@example.org" in html and "Pat Doe" in html
    assert "Politics, Culture" in html
    assert re.search(r"Breaking-news alerts</dt><dd>off</dd>", html)
    assert re.search(r"Time zone</dt><dd>Europe/Berlin</dd>", html)
    assert "Language</dt>" not in html  # not set: not shown
    assert html.count("signup-page") == 1 and "confirm-page" in html
    assert f'href="/admin/editions/{edition_id}"' in html and "Morning briefing" in html
    assert "Export their data (JSON)" in html and "Erase this reader" in html
    assert owner.get("/admin/readers/no-such-reader").status_code == 404


def test_an_owner_exports_a_readers_data_and_it_is_audited(app: Flask, owner: FlaskClient) -> None:
    uid, _ = _reader_with_history(app)
    answer = post(owner, f"/admin/readers/{uid}/export", page=f"/admin/readers/{uid}")
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    assert answer.headers["Content-Disposition"] == f'attachment; filename="reader-{uid}.json"'
    assert answer.headers["Cache-Control"] == "no-store"
    held = json.loads(answer.data)
    with app.app_context():
        expected = privacy.export_data("pat@example.org")
        audited = db.session.execute(select(AuditEvent.actor, AuditEvent.action, AuditEvent.target))
        assert (f"operator:{OWNER}", "reader.export", f"reader:{uid}") in audited.all()
    held.pop("exported_at"), expected.pop("exported_at")
    assert held == expected
    assert [line["action"] for line in held["consent_history"]] == ["signup", "confirm"]
    # A GET exports nothing (it would change state: the audit log).
    assert owner.get(f"/admin/readers/{uid}/export").status_code == 405


def count(app: Flask, model: type, *where: object) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_an_owner_erases_a_reader_after_confirming_and_the_suppression_stays(
    app: Flask, owner: FlaskClient
) -> None:
    uid, _ = _reader_with_history(app)
    page = owner.get(f"/admin/readers/{uid}/erase")
    assert page.status_code == 200
    assert "Erase this reader?" in page.get_data(as_text=True)
    token = csrf_of(page.get_data(as_text=True))
    # The wrong address typed erases nobody.
    wrong = owner.post(
        f"/admin/readers/{uid}/erase", data={"csrf_token": token, "confirm": "pat@example.com"}
    )
    assert wrong.status_code == 400
    shown = unescape(wrong.get_data(as_text=True))
    assert "That is not this reader's address; nothing was erased." in shown
    assert count(app, Subscriber) == 1

    done = owner.post(
        f"/admin/readers/{uid}/erase", data={"csrf_token": token, "confirm": " Pat@Example.org "}
    )
    assert done.status_code == 303 and done.headers["Location"] == "/admin/readers"
    shown = unescape(owner.get("/admin/readers").get_data(as_text=True))
    assert "The reader's data was erased." in shown
    assert count(app, Subscriber) == 0
    assert count(app, SubscriberTopic) == 0
    assert count(app, Delivery) == 0
    assert count(app, ConsentEvent, ConsentEvent.subscriber_id.is_not(None)) == 0
    kept = Suppression.address_hash == address_hash("pat@example.org")
    assert count(app, Suppression, kept, Suppression.reason == "erased") == 1
    with app.app_context():
        [erase_line] = db.session.scalars(select(ConsentEvent)).all()
        assert erase_line.action == "erase" and erase_line.source == f"console:{OWNER}"
        assert erase_line.detail["operator"] == OWNER
        assert "pat@example.org" not in json.dumps(erase_line.detail)
        [audited] = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "reader.erase")
        ).all()
        assert audited.actor == f"operator:{OWNER}" and audited.target == f"reader:{uid}"
        assert audited.detail["removed"]["delivery"] == 1
        assert "pat@example.org" not in json.dumps(audited.detail)
    assert owner.get(f"/admin/readers/{uid}").status_code == 404


def test_an_editor_may_read_but_neither_export_nor_erase(app: Flask, client: FlaskClient) -> None:
    uid, _ = _reader_with_history(app)
    add_operator(app, EDITOR, "editor")
    sign_in(client, EDITOR)
    html = client.get(f"/admin/readers/{uid}").get_data(as_text=True)
    assert "pat@example.org" in html
    assert "Erase this reader" not in html and "Export their data" not in html
    assert post(client, f"/admin/readers/{uid}/export").status_code == 403
    erase = post(client, f"/admin/readers/{uid}/erase", {"confirm": "pat@example.org"})
    assert erase.status_code == 403
    assert count(app, Subscriber) == 1
    with app.app_context():
        actions = db.session.scalars(select(AuditEvent.action)).all()
    assert "reader.export" not in actions and "reader.erase" not in actions


def test_a_readers_deliveries_come_a_page_at_a_time(app: Flask, owner: FlaskClient) -> None:
    now = utcnow()
    with app.app_context():
        reader = Subscriber(email="daily@example.org", status="active", frequency="daily")
        db.session.add(reader)
        db.session.flush()
        for day in range(60):
            edition = Edition(
                frequency="daily",
                subject=f"Day {day}",
                covers_until=now,
                created_at=now - timedelta(days=60 - day),
            )
            db.session.add(edition)
            db.session.flush()
            db.session.add(Delivery(edition_id=edition.id, subscriber_id=reader.id, state="sent"))
        db.session.commit()
        uid = reader.uid
    html = owner.get(f"/admin/readers/{uid}").get_data(as_text=True)
    first = re.findall(r">#\d+ Day (\d+)<", html)
    assert first[0] == "59" and len(first) == 50
    older = next_link(html)
    assert older is not None
    rest = re.findall(r">#\d+ Day (\d+)<", owner.get(older).get_data(as_text=True))
    assert rest == [str(day) for day in range(9, -1, -1)]


def test_searches_are_index_range_scans_read_in_order(app: Flask) -> None:
    """At a million readers a search must not read the table or sort its matches: each
    part is a range of an index kept in byte order (migration 0009), read in that order."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("PostgreSQL plans small tables as sequential scans; SQLite shows the index")
    add_readers(app, [(f"ann{n}@example.org", f"Ann {n}") for n in range(5)])
    first = query_plans(app, lambda: directory.search("an", limit=2))
    later = query_plans(
        app, lambda: directory.search("an", directory.search("an", limit=7).after, limit=2)
    )
    plans = first + later
    assert any("ix_subscriber_name_search" in plan for plan in plans), plans
    assert any(re.search(r"INDEX \w+ \(email>\? AND email<\?\)", plan) for plan in plans), plans
    for plan in plans:
        assert not re.search(r"^SCAN subscriber$", plan, re.M), plan
        assert "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("q=%00ann", "q: must be text without control characters"),
        ("q=" + "a" * 400, "q: must be at most 320 characters"),
        # A cursor holding a lone surrogate, or a NUL: no database could take them.
        ("q=a&after=WyJhIiwiXHVkODAwIl0", "after: this page link is not valid"),
        ("q=a&after=WyJhIiwiXHUwMDAwIl0", "after: this page link is not valid"),
        ("after=WyJpIiw5OTk5OTk5OTk5OTk5OTk5OTk5OTk5XQ", "after: this page link is not valid"),
        # Cursors of the search holding an empty list, or no text where its kind should be.
        ("q=x&after=W10", "after: this page link is not valid"),
        ("q=x&after=WzFd", "after: this page link is not valid"),
        ("q=x&after=W251bGxd", "after: this page link is not valid"),
    ],
)
def test_hostile_search_parameters_get_a_400_naming_them(
    owner: FlaskClient, query: str, message: str
) -> None:
    answer = owner.get(f"/admin/readers?{query}")
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)


@pytest.mark.parametrize("uid", ["%00", "a%00b", "%01", "x%7F", "a" * 33, "a.b"])
def test_a_reader_address_that_is_no_uid_is_a_404(owner: FlaskClient, uid: str) -> None:
    # Refused before any query: PostgreSQL refuses a NUL in text, which would be a 500.
    for path in (f"/admin/readers/{uid}", f"/admin/readers/{uid}/erase"):
        answer = owner.get(path)
        assert answer.status_code == 404, path
        assert "There is no reader here" in answer.get_data(as_text=True)
    assert post(owner, f"/admin/readers/{uid}/export").status_code == 404


@pytest.mark.parametrize("before", ["²", "-1", "1e3", "9" * 30])
def test_hostile_page_positions_get_a_400_naming_them(
    app: Flask, owner: FlaskClient, before: str
) -> None:
    uid, _ = _reader_with_history(app)
    for path in (f"/admin/readers/{uid}", "/admin/bounces", "/admin/audit"):
        answer = owner.get(path, query_string={"before": before})
        assert answer.status_code == 400, path
        assert "before: must be" in answer.get_data(as_text=True)
    huge = "9" * 30
    assert post(owner, f"/admin/operators/{huge}/remove").status_code == 404
    assert post(owner, f"/admin/api-tokens/{huge}/revoke").status_code == 404
