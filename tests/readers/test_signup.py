"""Signup, abuse and privacy (OWASP ASVS V11, GDPR art. 7) through the reader's pages."""

from __future__ import annotations

import re
import statistics
import time
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter.clock import utcnow
from newsletter.db.models import Article, ConsentEvent, ConsentWording, Subscriber
from newsletter.extensions import SweptMemoryStorage, db, limiter
from newsletter.mail.message import OutgoingMessage
from newsletter.tokens import Purpose
from tests.conftest import (
    add_subscriber,
    db_state,
    form_fields,
    link_from,
    mail_parts,
    make_token,
    path_of,
    signed_ago,
    signup,
    with_config,
    without_nonce,
)

# Headers that legitimately differ between two requests whatever the address.
VOLATILE_HEADERS = {"date", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"}
EMPTY = {"subscribers": [], "consent_events": 0, "wordings": 0}


# The answer carries the address typed, sealed with a random IV: its value differs between
# any two answers, but not its presence, its name or its attributes.
SEALED = re.compile(r"(session=|[?&]t=)[^;&\s]+")


def _headers(response: Any) -> list[tuple[str, str]]:
    return sorted(
        (k, SEALED.sub(r"\1SEALED", without_nonce(v.encode()).decode()))
        for k, v in response.headers
        if k.lower() not in VOLATILE_HEADERS
    )


Answer = tuple[tuple[int, list[tuple[str, str]]], tuple[int, bytes, list[tuple[str, str]]]]


def _answer(response: Any, email: str) -> Answer:
    """The redirect a signup answers with, and the page it leads to with the address typed
    (which it repeats, so the reader can notice a typo) written as ADDRESS."""
    [redirect] = response.history
    typed = re.compile(re.escape(email).encode(), re.IGNORECASE)
    page = typed.sub(b"ADDRESS", without_nonce(response.get_data()))
    # Its length follows from the address's, like its body.
    headers = [(k, v) for k, v in _headers(response) if k != "Content-Length"]
    return (redirect.status_code, _headers(redirect)), (response.status_code, page, headers)


def _known_readers(app: Flask) -> dict[str, str]:
    """One address in each state a signup may meet, keyed by that state."""
    add_subscriber(app, "pending@example.com", status="pending", confirm_nonce="n1")
    add_subscriber(app, "active@example.com", status="active")
    add_subscriber(app, "gone@example.com", status="unsubscribed")
    add_subscriber(app, "bounced@example.com", status="bounced")
    return {
        "pending": "pending@example.com",
        "active": "active@example.com",
        "unsubscribed": "gone@example.com",
        "bounced": "bounced@example.com",
    }


def test_answer_is_the_same_for_new_pending_active_and_unsubscribed_addresses(
    app: Flask, client: FlaskClient
) -> None:
    addresses = {"new": "new@example.com", **_known_readers(app)}

    answers = {state: _answer(signup(client, email), email) for state, email in addresses.items()}

    (status, headers), (page_status, page, _) = answers["new"]
    assert status == 303 and ("Location", "/subscribe/check-inbox") in headers
    assert page_status == 200 and b"Check your inbox" in page and b"ADDRESS" in page
    for state, answer in answers.items():
        assert answer == answers["new"], f"the answer for a {state} address differs"


@with_config(CONFIRM_MAILS_PER_DAY=1000, RATELIMIT_SIGNUP="1000 per minute")
def test_answer_time_does_not_depend_on_address_state(app: Flask, client: FlaskClient) -> None:
    known = _known_readers(app)
    timings: dict[str, list[float]] = {state: [] for state in ["new", *known]}
    for run in range(7):
        for state in timings:
            email = f"new{run}@example.com" if state == "new" else known[state]
            data = {
                **form_fields(client.get("/subscribe").get_data(as_text=True)),
                "email": email,
                "consent": "y",
                "frequency": "weekly",
            }
            start = time.perf_counter()
            assert client.post("/subscribe", data=data).status_code == 303
            timings[state].append(time.perf_counter() - start)

    medians = {state: statistics.median(values) for state, values in timings.items()}
    # Generous: this catches a skipped mail or a skipped database write, not microseconds.
    assert max(medians.values()) <= 3 * min(medians.values()) + 0.02, medians


def test_confirmation_mails_per_address_are_capped_per_day(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    limit = app.config["CONFIRM_MAILS_PER_DAY"]
    answers = []
    for attempt in range(limit + 3):
        # List bombing comes from many addresses and spellings of the victim's address.
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{attempt + 1}"
        email = "Victim@Example.com" if attempt % 2 else "victim@example.com"
        answers.append(_answer(signup(client, email), email))

    assert len(outbox) == limit
    assert {message.recipient for message in outbox} == {"victim@example.com"}
    assert all(answer == answers[0] for answer in answers), "over the limit, the same answer"


def test_the_per_address_cap_leaves_other_addresses_alone(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    for _ in range(app.config["CONFIRM_MAILS_PER_DAY"] + 1):
        signup(client, "victim@example.com")
    outbox.clear()
    signup(client, "someone-else@example.com")
    assert [message.recipient for message in outbox] == ["someone-else@example.com"]


@with_config(RATELIMIT_SIGNUP="3 per minute")
def test_too_many_signups_from_one_ip_get_a_429_page(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    for n in range(3):
        assert signup(client, f"reader{n}@example.com").status_code == 200

    response = signup(client, "one-more@example.com")

    assert response.status_code == 429
    assert "text/html" in response.content_type
    assert "Too many attempts" in response.get_data(as_text=True)
    assert [m.recipient for m in outbox] == [f"reader{n}@example.com" for n in range(3)]
    client.environ_base["REMOTE_ADDR"] = "203.0.113.50"
    assert signup(client, "elsewhere@example.com").status_code == 200


def test_rate_limit_counters_are_freed_once_expired_and_live_ones_kept(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A counter per address lives a day: the in-process store must give expired ones back
    # (seldom, not after every hit), or a busy signup form grows the web workers for good.
    signup(client, "reader@example.com")
    storage = limiter.storage
    assert isinstance(storage, SweptMemoryStorage)
    storage.incr("short-lived", 0.01)
    time.sleep(0.05)
    # Expired, but not yet swept (reading it would drop it: nothing here reads it).
    assert "short-lived" in storage.storage
    assert storage.expirations["short-lived"] <= time.time()
    monkeypatch.setattr(storage, "_next_sweep", 0.0)
    storage.incr("another", 60)  # any hit sweeps once the time has come
    assert "short-lived" not in storage.storage
    assert storage.get("another") == 1
    signup_counters = [key for key in storage.storage if "signup-mail" in key]
    assert signup_counters and all(storage.get(key) == 1 for key in signup_counters)


def _normal_answer(client: FlaskClient) -> Answer:
    return _answer(signup(client, "person@example.com"), "person@example.com")


def test_filled_honeypot_gets_the_same_answer_and_nothing_happens(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    bot = _answer(
        signup(client, "bot-target@example.com", website="http://spam.example"),
        "bot-target@example.com",
    )

    assert db_state(app) == EMPTY
    assert outbox == []
    assert bot == _normal_answer(client)


@with_config(SIGNUP_MIN_SECONDS=30)
def test_inhumanly_fast_submission_gets_the_same_answer_and_nothing_happens(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    bot = _answer(signup(client, "bot-target@example.com"), "bot-target@example.com")

    assert db_state(app) == EMPTY
    assert outbox == []
    with signed_ago(seconds=60):
        page = client.get("/subscribe")  # a person who took a minute over the form
    fields = form_fields(page.get_data(as_text=True))
    human = client.post(
        "/subscribe",
        data={**fields, "email": "person@example.com", "consent": "y", "frequency": "weekly"},
        follow_redirects=True,
    )
    assert _answer(human, "person@example.com") == bot
    assert [m.recipient for m in outbox] == ["person@example.com"]


@pytest.mark.parametrize("started", ["", "forged-start-time", "eyJ9.a.b"])
def test_missing_or_forged_form_start_is_taken_for_a_bot(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage], started: str
) -> None:
    bot = _answer(
        signup(client, "bot-target@example.com", started=started), "bot-target@example.com"
    )
    assert db_state(app) == EMPTY and outbox == []
    assert bot == _normal_answer(client)


@with_config(SIGNUP_MIN_SECONDS=5)
def test_a_reader_fixing_an_error_is_not_taken_for_a_bot_when_resubmitting_at_once(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    with signed_ago(seconds=20):
        page = client.get("/subscribe")  # filled in over 20 seconds
    fields = form_fields(page.get_data(as_text=True))
    typed = {"email": "reader@example.com", "frequency": "weekly"}
    first = client.post("/subscribe", data={**fields, **typed})
    assert first.status_code == 400 and "Tick the box" in first.get_data(as_text=True)

    # The reader ticks the box and presses Subscribe again straight away.
    again = form_fields(first.get_data(as_text=True))
    done = client.post("/subscribe", data={**again, **typed, "consent": "y"})

    assert done.status_code == 303
    assert [m.recipient for m in outbox] == ["reader@example.com"]


def test_a_form_left_open_too_long_is_shown_again_rather_than_dropped(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    hours = app.config["SIGNUP_FORM_MAX_AGE_HOURS"] + 1
    with signed_ago(seconds=hours * 3600):
        page = client.get("/subscribe")
    fields = form_fields(page.get_data(as_text=True))

    typed = {"email": "slow-reader@example.com", "consent": "y", "frequency": "weekly"}
    response = client.post("/subscribe", data={**fields, **typed, "name": "Slow"})

    html = response.get_data(as_text=True)
    assert 400 <= response.status_code < 500
    assert 'value="slow-reader@example.com"' in html, "what the reader typed is kept"
    assert "expired" in html
    assert db_state(app) == EMPTY and outbox == []
    app.config["SIGNUP_MIN_SECONDS"] = 0
    retry = client.post("/subscribe", data={**form_fields(html), **typed})
    assert retry.status_code == 303
    assert [m.recipient for m in outbox] == ["slow-reader@example.com"]


def test_unticked_consent_box_is_rejected_and_nothing_is_written(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    response = signup(client, "reader@example.com", consent="")

    assert response.status_code == 400
    assert "Tick the box to agree" in response.get_data(as_text=True)
    assert db_state(app) == EMPTY and outbox == []


def _links(text: str) -> set[str]:
    return set(re.findall(r"https?://[^\s\"'<>]+", text))


def test_pending_address_gets_only_the_confirmation_mail_with_no_marketing(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    with app.app_context():
        db.session.add(
            Article(
                guid="g-1",
                url="https://news.example.test/articles/budget-vote",
                title="Parliament passes the budget",
                summary="<p>A long night in the chamber.</p>",
                category="Politics",
                topic="politics",
                published_at=utcnow(),
            )
        )
        db.session.commit()

    signup(client, "reader@example.com", topics=["politics"])

    assert len(outbox) == 1
    message = outbox[0]
    text, html = mail_parts(message)
    confirm_url = link_from(message, "/confirm/")
    assert "Confirm your subscription" in message.data.decode()
    assert _links(text) == {confirm_url}
    assert {href for href in re.findall(r'href="([^"]+)"', html)} == {confirm_url}
    for marketing in ("Parliament passes the budget", "budget-vote", "digest", "Politics"):
        assert marketing not in text and marketing not in html
    with app.app_context():
        assert db.session.scalar(select(Subscriber.status)) == "pending"


def test_consent_log_records_who_when_where_how_and_which_wording(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    client.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0 (Reader)"
    page = client.get("/subscribe").get_data(as_text=True)
    assert app.config["CONSENT_TEXT"] in page, "the wording logged is the wording shown"
    before = utcnow()
    signup(client, "reader@example.com", topics=["politics"], frequency="daily")
    confirm_path = path_of(link_from(outbox[0], "/confirm/"))
    confirm_page = client.get(confirm_path).get_data(as_text=True)
    client.post(confirm_path, data=form_fields(confirm_page))

    with app.app_context():
        subscriber = db.session.scalars(select(Subscriber)).one()
        events = db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
        wording = db.session.scalars(select(ConsentWording)).one()
        assert [(e.action, e.source) for e in events] == [
            ("signup", "signup-page"),
            ("confirm", "confirm-page"),
        ]
        for event in events:
            assert event.subscriber_id == subscriber.id
            assert event.ip == "203.0.113.9"
            assert event.user_agent == "Mozilla/5.0 (Reader)"
            assert before - timedelta(seconds=1) <= event.occurred_at <= utcnow()
            assert event.consent_version == wording.version
        assert wording.text == app.config["CONSENT_TEXT"]
        assert events[0].detail == {"topics": ["politics"], "frequency": "daily", "name": ""} | {
            "request": events[0].detail["request"]
        }


def test_a_new_consent_wording_is_stored_as_a_new_version(app: Flask, client: FlaskClient) -> None:
    signup(client, "first@example.com")
    app.config["CONSENT_TEXT"] = "New wording: we send one digest a week."
    signup(client, "second@example.com")

    with app.app_context():
        texts = {w.version: w.text for w in db.session.scalars(select(ConsentWording))}
        versions = dict(
            db.session.execute(
                select(Subscriber.email, ConsentEvent.consent_version).join(
                    ConsentEvent, ConsentEvent.subscriber_id == Subscriber.id
                )
            ).all()
        )
    assert len(texts) == 2
    assert texts[versions["second@example.com"]] == "New wording: we send one digest a week."
    assert texts[versions["first@example.com"]] != texts[versions["second@example.com"]]


def test_unsubscribe_from_a_mail_is_logged_as_a_withdrawal(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    uid = add_subscriber(app)
    token = make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    app.test_client(use_cookies=False).post(
        f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}
    )
    with app.app_context():
        event = db.session.scalars(select(ConsentEvent)).one()
        assert (event.action, event.source) == ("unsubscribe", "one-click")


HOSTILE_NAMES = ["<b>x</b>", "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_html_in_a_name_is_escaped_on_the_form_shown_again(
    app: Flask, client: FlaskClient, name: str
) -> None:
    response = signup(client, "not-an-address", name=name)

    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert name not in html
    assert "&lt;" in html and "<b>x</b>" not in html and "<script>alert" not in html


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_html_in_a_name_never_reaches_a_mail(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage], name: str
) -> None:
    add_subscriber(app, "active@example.com")
    signup(client, "reader@example.com", name=name)
    signup(client, "active@example.com", name=name)

    assert len(outbox) == 2
    for message in outbox:
        raw = message.data.decode("utf-8", "replace")
        text, html = mail_parts(message)
        for shown in (raw, text, html):
            assert name not in shown
            assert "alert(1)" not in shown and "<b>x</b>" not in shown
    with app.app_context():
        assert (
            db.session.scalar(
                select(Subscriber.name).where(Subscriber.email == "reader@example.com")
            )
            == name
        ), "stored as typed; escaping happens where it is shown"


EMBED = "https://www.ledger.example"


@with_config(EMBED_ORIGINS=[EMBED])
def test_embed_token_answers_with_cors_headers_for_an_allowed_origin_only(
    app: Flask, client: FlaskClient
) -> None:
    allowed = client.get("/subscribe/embed-token", headers={"Origin": EMBED})
    other = client.get("/subscribe/embed-token", headers={"Origin": "https://evil.example"})

    assert allowed.status_code == 200 and allowed.json and allowed.json["started"]
    assert allowed.headers["Access-Control-Allow-Origin"] == EMBED
    assert "Origin" in allowed.headers.get("Vary", "")
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "no-store" in allowed.headers["Cache-Control"]
    assert "Set-Cookie" not in allowed.headers


def _embedded_post(app: Flask, data: dict[str, Any], origin: str = EMBED) -> Any:
    """A post from a box on the publisher's page: another site, so no cookie and no CSRF."""
    return app.test_client(use_cookies=False).post(
        "/subscribe", data=data, headers={"Origin": origin}
    )


def _embed_started(app: Flask) -> str:
    response = app.test_client(use_cookies=False).get(
        "/subscribe/embed-token", headers={"Origin": EMBED}
    )
    return str(response.json["started"])  # type: ignore[index]


@with_config(EMBED_ORIGINS=[EMBED])
def test_embedded_box_from_an_allowed_origin_needs_no_csrf_token(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    data = {"email": "reader@example.com", "consent": "y", "frequency": "weekly"}
    response = _embedded_post(app, {**data, "started": _embed_started(app)})

    # The answer is a page of ours that the reader's browser, back from another site with
    # no cookie of ours, can show: the address it repeats travels sealed in the URL.
    assert response.status_code == 303
    assert "Set-Cookie" not in response.headers
    location = response.headers["Location"]
    assert location.startswith("/subscribe/check-inbox?t=")
    assert "reader" not in location and "example" not in location
    page = app.test_client(use_cookies=False).get(location)
    assert page.status_code == 200
    assert "Check your inbox" in page.get_data(as_text=True)
    assert "reader@example.com" in page.get_data(as_text=True)
    assert [m.recipient for m in outbox] == ["reader@example.com"]
    with app.app_context():
        event = db.session.scalars(select(ConsentEvent)).one()
        assert event.source == f"embed:{EMBED}"


@with_config(EMBED_ORIGINS=[EMBED])
@pytest.mark.parametrize("origin", ["https://evil.example", "null", f"{EMBED}.evil.example"])
def test_post_from_another_origin_without_csrf_token_writes_nothing(
    app: Flask, outbox: list[OutgoingMessage], origin: str
) -> None:
    data = {"email": "reader@example.com", "consent": "y", "frequency": "weekly"}
    response = _embedded_post(app, {**data, "started": _embed_started(app)}, origin)

    assert 400 <= response.status_code < 500
    assert "Subscribe" in response.get_data(as_text=True)
    assert db_state(app) == EMPTY and outbox == []


@with_config(EMBED_ORIGINS=[EMBED])
def test_embedded_box_without_its_script_finishes_on_our_own_form(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    reader = app.test_client()  # the reader's browser: it keeps our cookie from now on
    data = {"email": "reader@example.com", "name": "Ann", "consent": "y", "frequency": "daily"}
    response = reader.post("/subscribe", data=data, headers={"Origin": EMBED})

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'value="reader@example.com"' in html and 'value="Ann"' in html
    assert db_state(app) == EMPTY and outbox == []

    # The reader presses Subscribe on our page: now a same-site post with our CSRF token.
    fields = form_fields(html)
    assert fields.get("csrf_token") and fields.get("started")
    done = reader.post("/subscribe", data={**data, **fields}, follow_redirects=True)
    assert done.status_code == 200 and "Check your inbox" in done.get_data(as_text=True)
    assert [m.recipient for m in outbox] == ["reader@example.com"]


def test_confirming_over_https_works_with_what_a_browser_sends(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    """Behind a TLS proxy the CSRF check also wants a same-origin Referer.

    A browser sends one only if the page's referrer policy allows it, so this follows the
    policy the page declares, as a browser would.
    """
    https = "https://news.example.test"
    reader = app.test_client()
    signup(reader, "reader@example.com")
    confirm_path = path_of(link_from(outbox[0], "/confirm/"))
    page = reader.get(confirm_path, base_url=https)
    html = page.get_data(as_text=True)

    policy = re.search(r'<meta name="referrer" content="([^"]+)"', html)
    headers = {}
    if policy is None or policy.group(1) != "no-referrer":
        headers["Referer"] = f"{https}{confirm_path}"
    done = reader.post(confirm_path, data=form_fields(html), headers=headers, base_url=https)

    assert done.status_code == 200, done.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Subscriber.status)) == "active"


@pytest.fixture
def rival_insert(app: Flask) -> Any:
    """Have another request add the same row just before our INSERT into that table, once."""
    from sqlalchemy import event, insert

    armed: list[tuple[type, dict[str, Any]]] = []

    def before_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        for model, values in list(armed):
            if statement.startswith(f"INSERT INTO {model.__tablename__} "):
                armed.remove((model, values))
                with db.engine.begin() as rival:  # its own connection and transaction
                    rival.execute(insert(model).values(**values))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", before_execute)
    yield armed
    event.remove(engine, "before_cursor_execute", before_execute)


def test_a_double_click_on_subscribe_for_a_new_address_is_not_a_server_error(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage], rival_insert: Any
) -> None:
    rival_insert.append(
        (Subscriber, {"email": "reader@example.com", "uid": "rival-uid", "status": "pending"})
    )

    response = signup(client, "reader@example.com")

    assert response.status_code == 200
    assert "Check your inbox" in response.get_data(as_text=True)
    with app.app_context():
        [subscriber] = db.session.scalars(select(Subscriber)).all()
        assert subscriber.uid == "rival-uid" and subscriber.confirm_nonce
    assert [m.recipient for m in outbox] == ["reader@example.com"]


def test_the_first_signups_under_a_new_consent_wording_at_once_are_not_a_server_error(
    app: Flask, client: FlaskClient, rival_insert: Any
) -> None:
    from newsletter.readers.consent import wording

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("SQLite serializes writers: nobody can write between our look-up and insert")
    with app.app_context():
        version, text = wording()
    rival_insert.append((ConsentWording, {"version": version, "text": text}))

    assert signup(client, "reader@example.com").status_code == 200
    with app.app_context():
        assert db.session.scalar(select(ConsentEvent.consent_version)) == version
        assert db.session.scalars(select(ConsentWording.text)).all() == [text]
