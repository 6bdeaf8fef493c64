"""What the reader's pages say and offer: the truth about their state and the next step."""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous.encoding import base64_decode
from sqlalchemy import func, select

from newsletter.db.models import Edition, SentNotice, Subscriber
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.readers.addresses import suggest
from newsletter.tokens import Purpose
from tests.conftest import (
    add_subscriber,
    db_state,
    form_fields,
    link_from,
    mail_parts,
    make_token,
    path_of,
    signup,
    with_config,
)


def _text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def _forms_posting_to(html: str, path: str) -> list[str]:
    return re.findall(rf'<form[^>]*action="{re.escape(path)}"', html)


def _status(app: Flask, email: str = "reader@example.com") -> str:
    with app.app_context():
        return str(db.session.scalar(select(Subscriber.status).where(Subscriber.email == email)))


def _signup_and_confirm(
    client: FlaskClient,
    outbox: list[OutgoingMessage],
    email: str = "reader@example.com",
    **fields: Any,
) -> str:
    """Sign up and press Confirm in the mail's page; returns the confirmation link's path."""
    signup(client, email, **fields)
    confirm_path = path_of(link_from(outbox[-1], "/confirm/"))
    client.post(confirm_path, data=form_fields(_text(client.get(confirm_path))))
    return confirm_path


# --- / -------------------------------------------------------------------------------------


def test_the_bare_address_leads_to_the_signup_form(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code in (301, 302, 303, 307, 308)
    assert response.headers["Location"] == "/subscribe"
    assert "Get the latest news" in _text(client.get("/", follow_redirects=True))


# --- pages that tell the reader where they stand ----------------------------------------------


def test_reopening_a_used_confirmation_link_says_already_subscribed_with_preferences(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    confirm_path = _signup_and_confirm(client, outbox, topics=["politics"])
    assert _status(app) == "active"

    again = client.get(confirm_path)

    html = _text(again)
    assert again.status_code == 200
    assert "You're already subscribed" in html
    assert not _forms_posting_to(html, confirm_path), "no Confirm button to press again"
    assert "Confirm your subscription" not in html
    preferences = re.search(r'href="(/preferences/[^"]+)"', html)
    assert preferences, "a link to change what comes"
    page = client.get(preferences.group(1))
    assert page.status_code == 200 and "Your preferences" in _text(page)
    assert "Breaking News" in _text(page)


def test_pressing_confirm_again_also_links_to_preferences(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    confirm_path = _signup_and_confirm(client, outbox)
    again = client.post(confirm_path)
    assert again.status_code == 200
    assert "You're already subscribed" in _text(again)
    assert re.search(r'href="/preferences/[^"]+"', _text(again))


def test_reopening_an_unsubscribe_link_after_unsubscribing_says_so_and_offers_to_come_back(
    app: Flask, client: FlaskClient
) -> None:
    uid = add_subscriber(app)
    path = f"/unsubscribe/{make_token(app, Purpose.UNSUBSCRIBE, {'s': uid})}"
    assert _forms_posting_to(_text(client.get(path)), path), "the button, while subscribed"
    client.post(path)
    assert _status(app) == "unsubscribed"

    again = client.get(path)

    html = _text(again)
    assert again.status_code == 200
    assert "You're already unsubscribed" in html
    assert not _forms_posting_to(html, path), "no Unsubscribe button any more"
    assert 'href="/subscribe"' in html and "Subscribe again" in html
    pressed_again = client.post(path)  # an old tab's button, or a mail client's one-click
    assert pressed_again.status_code == 200
    assert "You're already unsubscribed" in _text(pressed_again)


def test_saving_preferences_after_unsubscribing_says_so_and_changes_nothing(
    app: Flask, client: FlaskClient
) -> None:
    uid = add_subscriber(app, topics=("culture",))
    link = f"/preferences/{make_token(app, Purpose.PREFERENCES, {'s': uid})}"
    opened = client.get(link)  # the page is open in a tab...
    assert "Save" in _text(opened)
    unsubscribe = f"/unsubscribe/{make_token(app, Purpose.UNSUBSCRIBE, {'s': uid})}"
    client.post(unsubscribe)  # ...while the reader unsubscribes from a mail
    before = db_state(app)

    saved = client.post(link, data={"topics": ["politics"], "frequency": "daily"})

    html = _text(saved)
    assert saved.status_code == 409
    assert "Saved" not in html and "Your next digest" not in html
    assert "You're unsubscribed" in html and "not saved" in html
    assert 'href="/subscribe"' in html and "Subscribe again" in html
    assert db_state(app) == before, "not resubscribed, nothing rewritten"
    assert _status(app) == "unsubscribed"
    shown = client.get(link)
    assert shown.status_code == 200 and "You're unsubscribed" in _text(shown)
    assert "<form" not in _text(shown)


# --- the signup answer: post/redirect/get ------------------------------------------------


def test_a_signup_redirects_to_a_page_whose_reload_sends_nothing_more(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    page = client.get("/subscribe")
    data = {**form_fields(_text(page)), "email": "Reader@Example.com", "consent": "y"}

    posted = client.post("/subscribe", data=data)

    assert posted.status_code == 303
    assert posted.headers["Location"] == "/subscribe/check-inbox"
    for _ in range(3):  # the reader reloads the answer
        answer = client.get("/subscribe/check-inbox")
        assert answer.status_code == 200
        assert "Check your inbox" in _text(answer)
        assert "<strong>reader@example.com</strong>" in _text(answer)
        assert answer.headers["Cache-Control"] == "no-store"
    assert [m.recipient for m in outbox] == ["reader@example.com"]


def test_the_answer_repeats_the_address_and_suggests_a_fix_for_a_domain_typo(
    app: Flask, client: FlaskClient
) -> None:
    answer = signup(client, "pat@gmial.con")

    html = _text(answer)
    assert "You entered <strong>pat@gmial.con</strong>" in html
    assert "Did you mean <strong>pat@gmail.com</strong>?" in html
    fix = re.search(r'<a href="([^"]+)">Sign up with pat@gmail.com</a>', html)
    assert fix and "gmail" not in fix.group(1), "the address is not in the link"
    form = client.get(fix.group(1).replace("&amp;", "&"))
    assert 'name="email" required type="email" value="pat@gmail.com"' in _text(form)
    assert form.headers["Cache-Control"] == "no-store"

    right = _text(signup(client, "pat@gmail.com"))
    assert "You entered <strong>pat@gmail.com</strong>" in right
    assert "Did you mean" not in right


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("pat@gmial.com", "pat@gmail.com"),
        ("pat@gmial.con", "pat@gmail.com"),
        ("pat@hotmial.com", "pat@hotmail.com"),
        ("pat@yahooo.com", "pat@yahoo.com"),
        ("pat@outlok.com", "pat@outlook.com"),
        ("pat@example.con", "pat@example.com"),
        ("pat@example.ogr", "pat@example.org"),
        ("pat@gmail.com", None),
        ("pat@example.co", None),
        ("pat@gmx.net", None),
        ("not-an-address", None),
    ],
)
def test_common_domain_typos_get_a_suggestion_and_right_ones_none(
    typed: str, meant: str | None
) -> None:
    assert suggest(typed) == meant


def test_the_answer_opened_afresh_says_nothing_of_an_address(client: FlaskClient) -> None:
    for path in ("/subscribe/check-inbox", "/subscribe/check-inbox?t=forged"):
        page = client.get(path)
        assert page.status_code == 200
        assert "the address you entered" in _text(page) and "You entered" not in _text(page)


EMBED = "https://www.ledger.example"


def _unreadable(token: str, address: str, *, signed: bool) -> None:
    """Neither the token nor what its base64 decodes to (inflated, if it was) holds the address.

    ``signed``: a session cookie (payload.time.signature); otherwise one base64 string.
    """
    token = unquote(token)
    if signed:
        raw = base64_decode(token.lstrip(".").split(".")[0])
        raw = zlib.decompress(raw) if token.startswith(".") else raw
    else:
        raw = base64_decode(token)
    for shown in (token.encode(), raw):
        assert address.encode() not in shown and address.split("@")[0].encode() not in shown


@with_config(EMBED_ORIGINS=[EMBED])
def test_the_address_never_travels_readable_in_a_url_or_a_cookie(app: Flask) -> None:
    browser = app.test_client()
    own = signup(browser, "reader@example.com")
    [redirect] = own.history
    assert redirect.headers["Location"] == "/subscribe/check-inbox"
    cookie = browser.get_cookie("session")
    assert cookie is not None
    _unreadable(cookie.value, "reader@example.com", signed=True)

    started = app.test_client().get("/subscribe/embed-token", headers={"Origin": EMBED})
    box = app.test_client(use_cookies=False).post(
        "/subscribe",
        data={"email": "reader@example.com", "consent": "y", "started": started.json["started"]},  # type: ignore[index]
        headers={"Origin": EMBED},
    )
    location = box.headers["Location"]
    token = location.split("t=", 1)[1]
    _unreadable(token, "reader@example.com", signed=False)
    # Another browser (no cookie of ours) is shown the answer; a token tampered with is not.
    assert "reader@example.com" in _text(app.test_client(use_cookies=False).get(location))
    tampered = location[:-4] + ("AAAA" if not location.endswith("AAAA") else "BBBB")
    assert "reader@example.com" not in _text(app.test_client(use_cookies=False).get(tampered))


def test_an_old_answer_no_longer_shows_the_address(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from newsletter.tokens import CHECK_INBOX_SECONDS

    signup(client, "reader@example.com")
    later = time.time() + CHECK_INBOX_SECONDS + 60
    monkeypatch.setattr("cryptography.fernet.time.time", lambda: later)
    assert "reader@example.com" not in _text(client.get("/subscribe/check-inbox"))


# --- the welcome mail ----------------------------------------------------------------------


@with_config(TIMEZONE="Europe/Berlin", DIGEST_HOUR=6)
def test_confirming_sends_a_welcome_with_topics_schedule_and_working_links(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _signup_and_confirm(client, outbox, topics=["politics", "culture"], frequency="daily")

    assert [m.recipient for m in outbox] == ["reader@example.com"] * 2
    welcome = outbox[1]
    raw = welcome.data.decode("utf-8", "replace")
    assert "Subject: Welcome to The Daily Ledger" in raw
    text, html = mail_parts(welcome)
    text = text.replace("\r\n", "\n")
    for part in (text, html):
        assert "Politics" in part and "Culture" in part
        assert "Business" not in part and "Technology" not in part
        assert "a daily digest" in part
        assert "every day at about 06:00 (Europe/Berlin time)" in part
    assert "- Politics\n- Culture\n" in text
    # (the mail's CSS is inlined, so each item carries a style attribute)
    assert re.search(r"<li\b[^>]*>Politics</li>", html) and re.search(
        r"<li\b[^>]*>Culture</li>", html
    )

    preferences = client.get(path_of(link_from(welcome, "/preferences/")))
    assert preferences.status_code == 200
    ticked = re.findall(
        r'<input checked id="[^"]+" name="topics"[^>]*value="([^"]+)"', _text(preferences)
    )
    assert ticked == ["politics", "culture"]
    unsubscribe_path = path_of(link_from(welcome, "/unsubscribe/"))
    assert _forms_posting_to(_text(client.get(unsubscribe_path)), unsubscribe_path)
    assert f'href="{link_from(welcome, "/preferences/")}"' in html
    with app.app_context():
        # Sent once through the signup-mail task, its key recorded like the others'.
        assert db.session.scalar(select(func.count()).select_from(SentNotice)) == 2


@with_config(DIGEST_WEEKDAY="thursday")
def test_a_weekly_reader_who_ticked_nothing_is_told_every_topic_and_the_day(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _signup_and_confirm(client, outbox, topics=[], frequency="weekly")
    text = mail_parts(outbox[1])[0].replace("\r\n", "\n")
    assert "every topic we cover" in text
    for name in app.config["TOPICS"]:
        assert f"- {name}\n" in text
    assert "a weekly digest" in text and "every Thursday at about 07:00 (UTC time)" in text


def test_a_second_press_of_confirm_sends_no_second_welcome(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    confirm_path = _signup_and_confirm(client, outbox)
    client.post(confirm_path)
    assert len(outbox) == 2


@with_config(WELCOME_MAIL=False)
def test_no_welcome_when_the_setting_is_off(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _signup_and_confirm(client, outbox)
    assert _status(app) == "active"
    assert len(outbox) == 1


# --- the archive ---------------------------------------------------------------------------


def _edition(app: Flask, frequency: str, moment: datetime, subject: str) -> int:
    with app.app_context():
        edition = Edition(frequency=frequency, subject=subject, covers_until=moment)
        edition.created_at = moment
        db.session.add(edition)
        db.session.commit()
        return edition.id


def test_the_archive_shows_each_editions_date_and_frequency_in_the_sites_style(
    app: Flask, client: FlaskClient
) -> None:
    weekly = _edition(app, "weekly", datetime(2026, 11, 30, 7, tzinfo=UTC), "Budget passes")
    daily = _edition(app, "daily", datetime(2026, 12, 4, 7, tzinfo=UTC), "Bridge opens")

    html = _text(client.get("/archive"))

    items = re.findall(r"<li\b[^>]*>(.*?)</li>", html, re.S)
    assert len(items) == 2
    assert '<time datetime="2026-12-04">04 December 2026</time>' in items[0]
    assert '<span class="tag">Daily</span>' in items[0]
    assert f'href="/archive/{daily}">Bridge opens</a>' in items[0]
    assert '<time datetime="2026-11-30">30 November 2026</time>' in items[1]
    assert '<span class="tag">Weekly</span>' in items[1]
    assert '<main class="wide">' in html and ".archive li {" in html

    page = _text(client.get(f"/archive/{weekly}"))
    assert '<main class="wide edition">' in page
    assert '<time datetime="2026-11-30">30 November 2026</time>' in page
    assert '<span class="tag">Weekly</span>' in page
