"""Requests from strangers: another person's address, no cookies, bad bytes, framing."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter.db.models import ConsentEvent, Subscriber
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.tokens import Purpose
from tests.conftest import (
    add_subscriber,
    db_state,
    form_fields,
    link_from,
    make_token,
    path_of,
    signup,
    with_config,
)

EMBED = "https://www.ledger.example"


def reader(app: Flask) -> Subscriber:
    with app.app_context():
        found = db.session.scalars(select(Subscriber)).one()
        db.session.expunge(found)
        return found


# ---- a pending reader's details belong to them


def test_a_stranger_resubmitting_a_pending_address_changes_nothing_of_the_reader(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    pat = app.test_client()
    signup(pat, "pat@example.org", name="Pat Reader", topics=["analytics"], frequency="daily")
    stranger = app.test_client()
    signup(
        stranger,
        "pat@example.org",
        name="Visit cheap-pills.example",
        topics=["politics"],
        frequency="weekly",
    )
    before = reader(app)
    assert (before.name, before.topics, before.frequency) == ("Pat Reader", ["analytics"], "daily")
    assert len(outbox) == 2

    # Pat confirms with the link from their own mail: their own choices are kept.
    mine = path_of(link_from(outbox[0], "/confirm/"))
    assert pat.post(mine).status_code == 200
    after = reader(app)
    assert after.status == "active"
    assert (after.name, after.topics, after.frequency) == ("Pat Reader", ["analytics"], "daily")


def test_a_reader_correcting_a_pending_signup_gets_the_choices_of_the_link_they_use(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    pat = app.test_client()
    signup(pat, "pat@example.org", name="Pta", topics=["analytics"], frequency="daily")
    signup(pat, "pat@example.org", name="Pat", topics=["business", "culture"], frequency="weekly")
    assert reader(app).name == "Pta"  # nothing changes before a link is used
    newest = path_of(link_from(outbox[1], "/confirm/"))
    assert pat.post(newest).status_code == 200
    after = reader(app)
    assert (after.name, after.topics, after.frequency) == (
        "Pat",
        ["business", "culture"],
        "weekly",
    )


def test_a_confirm_link_naming_another_readers_request_applies_none_of_it(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    signup(app.test_client(), "ann@example.org", name="Ann", topics=["politics"])
    signup(app.test_client(), "bob@example.org", name="Bob", topics=["analytics"])
    with app.app_context():
        ann, bob = db.session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
        bob_uid, bob_nonce = bob.uid, bob.confirm_nonce
        ann_request = db.session.scalar(
            select(ConsentEvent.detail).where(ConsentEvent.subscriber_id == ann.id)
        )["request"]
    token = make_token(app, Purpose.CONFIRM, {"s": bob_uid, "n": bob_nonce, "r": ann_request})
    assert app.test_client().post(f"/confirm/{token}").status_code == 200
    with app.app_context():
        bob = db.session.scalars(select(Subscriber).where(Subscriber.uid == bob_uid)).one()
        assert (bob.status, bob.name, bob.topics) == ("active", "Bob", ["analytics"])


def test_the_confirm_page_shows_the_choices_it_confirms_and_the_reader_may_correct_them(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    # The reader opens the link of a mail a stranger's request caused: the stranger's words
    # are there to see, and the reader's own replace them.
    signup(app.test_client(), "pat@example.org", name="Pat", topics=["analytics"])
    signup(app.test_client(), "pat@example.org", name="Buy pills", topics=["politics"])
    path = path_of(link_from(outbox[1], "/confirm/"))
    reader_browser = app.test_client(use_cookies=False)
    page = reader_browser.get(path).get_data(as_text=True)
    assert 'value="Buy pills"' in page
    assert re.search(
        r'checked id="topics-\d+" name="topics" type="checkbox" value="politics"', page
    )
    done = reader_browser.post(
        path, data={"name": "Pat", "topics": ["analytics", "culture"], "frequency": "daily"}
    )
    assert done.status_code == 200
    after = reader(app)
    assert (after.status, after.name, after.topics, after.frequency) == (
        "active",
        "Pat",
        ["analytics", "culture"],
        "daily",
    )


def test_a_bad_name_on_the_confirm_page_is_shown_again_and_confirms_nothing(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    signup(app.test_client(), "pat@example.org", name="Pat")
    path = path_of(link_from(outbox[0], "/confirm/"))
    answer = app.test_client().post(path, data={"name": "x" * 101, "frequency": "weekly"})
    assert answer.status_code == 400
    assert "Confirm your subscription" in answer.get_data(as_text=True)
    assert reader(app).status == "pending"
    hourly = app.test_client().post(path, data={"name": "Pat", "frequency": "hourly"})
    assert hourly.status_code == 400
    assert reader(app).status == "pending"


# ---- the signed token is the credential: no session, no CSRF cookie


def test_confirm_works_from_a_browser_that_keeps_no_cookies(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    signup(app.test_client(), "pat@example.org")
    path = path_of(link_from(outbox[0], "/confirm/"))
    cookieless = app.test_client(use_cookies=False)
    page = cookieless.get(path)
    assert page.status_code == 200 and "Set-Cookie" not in page.headers
    done = cookieless.post(path, data=form_fields(page.get_data(as_text=True)))
    assert done.status_code == 200, done.get_data(as_text=True)
    assert reader(app).status == "active"
    # Used once, the link confirms nothing more, and a forged one is refused.
    assert cookieless.post(path).status_code == 200  # "already confirmed"
    assert cookieless.post(path[:-3] + "abc").status_code == 400


def test_preferences_save_from_a_view_without_the_pages_cookie(app: Flask) -> None:
    with app.app_context():
        uid = add_subscriber(app, "pat@example.org", topics=["analytics"])
    token = make_token(app, Purpose.PREFERENCES, {"s": uid})
    shown = app.test_client().get(f"/preferences/{token}")
    assert shown.status_code == 200 and "Set-Cookie" not in shown.headers
    other_view = app.test_client(use_cookies=False)
    saved = other_view.post(
        f"/preferences/{token}", data={"topics": ["business"], "frequency": "daily"}
    )
    assert saved.status_code == 200, saved.get_data(as_text=True)
    assert "expired" not in saved.get_data(as_text=True)
    after = reader(app)
    assert (after.topics, after.frequency) == (["business"], "daily")
    forged = other_view.post(f"/preferences/{token}x", data={"frequency": "weekly"})
    assert forged.status_code == 400
    assert reader(app).frequency == "daily"


def test_unsubscribe_works_without_cookies_and_refuses_a_forged_token(app: Flask) -> None:
    with app.app_context():
        uid = add_subscriber(app, "pat@example.org")
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    client = app.test_client(use_cookies=False)
    assert client.post(f"/unsubscribe/{token[:-2]}zz").status_code == 400
    assert reader(app).status == "active"
    assert client.post(f"/unsubscribe/{token}").status_code == 200
    assert reader(app).status == "unsubscribed"


# ---- undecodable bytes


@pytest.mark.parametrize("body", ["%FF%FE%40example.org", "pat%FF%FE@example.org"])
def test_an_address_of_undecodable_bytes_is_refused_and_nothing_is_written(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage], body: str
) -> None:
    page = client.get("/subscribe")
    fields = form_fields(page.get_data(as_text=True))
    raw = "&".join(f"{k}={v}" for k, v in fields.items())
    answer = client.post(
        "/subscribe",
        data=f"{raw}&email={body}&consent=y&frequency=weekly".encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 400
    assert "not valid" in answer.get_data(as_text=True)
    assert db_state(app)["subscribers"] == [] and outbox == []


def test_the_cli_refuses_an_address_with_a_replacement_character(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["subscribers", "add", "pat\ufffd@example.org", "--topics", "analytics"]
    )
    assert result.exit_code != 0
    assert "not valid" in result.output
    assert db_state(app)["subscribers"] == []


# ---- what a page may load, who may frame it, what may be kept


def test_every_page_says_what_it_may_load_and_that_nobody_may_frame_it(
    client: FlaskClient,
) -> None:
    for path in ("/archive", "/healthz", "/no-such-page"):
        answer = client.get(path)
        policy = answer.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in policy, path
        assert "default-src 'none'" in policy and "script-src" not in policy
        assert answer.headers.get("X-Frame-Options") == "DENY", path
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", path


def test_the_pages_style_is_allowed_by_the_nonce_of_its_own_answer(client: FlaskClient) -> None:
    first, second = client.get("/subscribe"), client.get("/subscribe")
    nonces = []
    for answer in (first, second):
        policy = answer.headers["Content-Security-Policy"]
        nonce = policy.split("'nonce-")[1].split("'")[0]
        assert f'<style nonce="{nonce}">' in answer.get_data(as_text=True)
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


@with_config(EMBED_ORIGINS=[EMBED])
def test_only_the_signup_page_may_be_framed_and_only_by_the_publisher(
    app: Flask, client: FlaskClient
) -> None:
    page = client.get("/subscribe")
    assert f"frame-ancestors 'self' {EMBED}" in page.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in page.headers
    with app.app_context():
        uid = add_subscriber(app, "pat@example.org")
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    assert (
        "frame-ancestors 'none'"
        in client.get(f"/unsubscribe/{token}").headers["Content-Security-Policy"]
    )
    # The embedded box still works from the publisher's page.
    box = app.test_client(use_cookies=False)
    started = box.get("/subscribe/embed-token", headers={"Origin": EMBED})
    assert started.headers["Access-Control-Allow-Origin"] == EMBED
    posted = box.post(
        "/subscribe",
        data={
            "email": "ann@example.org",
            "consent": "y",
            "frequency": "weekly",
            "started": started.json["started"],  # type: ignore[index]
        },
        headers={"Origin": EMBED},
        follow_redirects=True,
    )
    assert posted.status_code == 200 and "Check your inbox" in posted.get_data(as_text=True)
    # The answer it leads to shows in the publisher's frame too.
    assert f"frame-ancestors 'self' {EMBED}" in posted.headers["Content-Security-Policy"]


def test_pages_reached_through_a_signed_link_are_never_cached_nor_refer(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    signup(client, "pat@example.org")
    confirm = path_of(link_from(outbox[0], "/confirm/"))
    with app.app_context():
        uid = add_subscriber(app, "ann@example.org")
    pages = [
        client.get(confirm),
        client.get(f"/unsubscribe/{make_token(app, Purpose.UNSUBSCRIBE, {'s': uid})}"),
        client.get(f"/preferences/{make_token(app, Purpose.PREFERENCES, {'s': uid})}"),
        client.post(f"/unsubscribe/{make_token(app, Purpose.UNSUBSCRIBE, {'s': uid})}"),
    ]
    for answer in pages:
        assert answer.status_code == 200
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" not in client.get("/subscribe").headers.get("Cache-Control", "")


@pytest.mark.parametrize("name", ["Pat\tReader", "Pat\x1b[31mRed", "Pat\u202eredaeR"])
def test_a_name_with_control_characters_is_refused_at_signup_and_on_the_confirm_page(
    app: Flask, outbox: list[OutgoingMessage], name: str
) -> None:
    refused = signup(app.test_client(), "pat@example.org", name=name)
    assert refused.status_code == 400 and "control characters" in refused.get_data(as_text=True)
    assert db_state(app)["subscribers"] == [] and outbox == []
    signup(app.test_client(), "pat@example.org", name="Pat")
    path = path_of(link_from(outbox[0], "/confirm/"))
    answer = app.test_client().post(path, data={"name": name, "frequency": "weekly"})
    assert answer.status_code == 400 and "control characters" in answer.get_data(as_text=True)
    assert (reader(app).status, reader(app).name) == ("pending", "Pat")
