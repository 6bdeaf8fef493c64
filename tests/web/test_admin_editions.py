"""The console's editions and alerts, as an editor uses them: preview, test, send, follow.

Tasks run in this process (no broker), and in tests a request's tasks run before its answer:
a send's batches have run when its redirect comes back.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from newsletter.clock import utcnow
from newsletter.db.models import (
    AuditEvent,
    BounceEvent,
    Delivery,
    DeliveryState,
    Edition,
    EditionKind,
    Subscriber,
)
from newsletter.digests import ledger, planning, sending
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.tokens import Purpose
from tests.conftest import make_token, with_config
from tests.support.clock import FakeClock
from tests.support.console import (
    EDITOR,
    OWNER,
    add_operator,
    form_posting_to,
    hidden_fields,
    sign_in,
    submit,
)
from tests.support.digest_helpers import (
    add_article,
    add_reader,
    html_part,
    parse,
    text_part,
)

TOPICS = ["Breaking News", "Politics", "Analytics"]


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {"TOPICS": TOPICS, "SITE_NAME": "The Daily Ledger"}


@pytest.fixture
def editor(app: Flask, client: FlaskClient) -> FlaskClient:
    """The test client, signed in as an editor."""
    add_operator(app, EDITOR, "editor")
    sign_in(client, EDITOR)
    return client


def _text(answer: Any) -> str:
    return str(answer.get_data(as_text=True))


def _count(app: Flask, model: Any, *where: Any) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _audit(app: Flask) -> list[tuple[str, str, str]]:
    with app.app_context():
        return [
            (event.actor, event.action, event.target)
            for event in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))
            if event.action not in ("sign_in", "sign_out")
        ]


def _csrf(client: FlaskClient) -> dict[str, list[str]]:
    """The session's CSRF token, as every console page's sign-out form carries it."""
    page = _text(client.get("/admin/editions"))
    return {"csrf_token": hidden_fields(form_posting_to(page, "/admin/sign-out"))["csrf_token"]}


def _edition_id(answer: Any) -> int:
    assert answer.status_code == 302, _text(answer)
    found = re.fullmatch(r"/admin/editions/(\d+)", urlsplit(answer.headers["Location"]).path)
    assert found, answer.headers["Location"]
    return int(found.group(1))


def _daily_news(app: Flask) -> None:
    """Three new articles in two topics, two daily readers of them, and readers who must not
    get the daily edition."""
    add_article(app, "Council approves the new bridge", "Politics")
    add_article(app, "Turnout fell in every ward", "Politics")
    add_article(app, "Water use, street by street", "Analytics")
    add_reader(app, "ann@example.org", ["politics"])
    add_reader(app, "bob@example.org", ["analytics", "politics"])
    add_reader(app, "weekly@example.org", ["politics"], frequency="weekly")
    add_reader(app, "gone@example.org", ["politics"], status="unsubscribed")


# --- the list ------------------------------------------------------------------------------


def test_the_list_shows_the_latest_editions_with_their_counts_a_page_at_a_time(
    app: Flask, editor: FlaskClient
) -> None:
    with app.app_context():
        for number in range(1, 31):
            db.session.add(
                Edition(
                    frequency="daily",
                    subject=f"Number {number:02d}",
                    covers_until=utcnow(),
                    state="done",
                )
            )
        db.session.commit()
    first = _text(editor.get("/admin/editions"))
    assert "Number 30" in first and "Number 06" in first and "Number 05" not in first
    older = re.search(r'href="(/admin/editions\?before=\d+)"', first)
    assert older, "no link to the older editions"
    second = _text(editor.get(older.group(1)))
    assert "Number 05" in second and "Number 01" in second and "Number 06" not in second
    assert "Older editions</a>" not in second and "Newest editions" in second


def test_the_list_counts_what_the_ledger_and_the_bounces_say(
    app: Flask, editor: FlaskClient
) -> None:
    _daily_news(app)
    edition_id = _edition_id(submit(editor, "/admin/editions/send", "/admin/editions/send"))
    with app.app_context():
        delivery = db.session.scalars(select(Delivery).where(Delivery.edition_id == edition_id))
        first = next(iter(delivery))
        db.session.add(
            BounceEvent(delivery_id=first.id, kind="complaint", source="test", fingerprint="f" * 64)
        )
        db.session.commit()
    page = _text(editor.get("/admin/editions"))
    row = re.search(
        rf"<tr>\s*<td class=\"wide\"><a href=\"/admin/editions/{edition_id}\">.*?</tr>", page, re.S
    )
    assert row, page
    cells = dict(re.findall(r'data-label="([A-Za-z]+)">(.*?)</td>', row.group(0), re.S))
    assert cells["Kind"].strip() == "Daily digest"
    assert re.sub(r"<[^>]+>", "", cells["Sent"]) == "2 of&nbsp;2"
    assert (cells["Failed"], cells["Unknown"], cells["Bounced"], cells["Complained"]) == (
        "0",
        "0",
        "0",
        "1",
    )


# --- the preview ---------------------------------------------------------------------------


def test_the_preview_shows_the_subject_the_mail_and_its_text_for_a_set_of_topics(
    app: Flask, editor: FlaskClient
) -> None:
    _daily_news(app)
    answer = editor.get("/admin/editions/preview?frequency=daily&topics=analytics")
    page = _text(answer)
    assert answer.status_code == 200
    # The subject a reader of only these topics gets.
    assert "<strong>Subject:</strong> Water use, street by street | The Daily Ledger daily" in page
    assert "hold 3 articles" in page and "(1 in these topics)" in page and "go to 2 readers" in page
    text = re.search(r'<pre class="text-part">(.*?)</pre>', page, re.S)
    assert text and "Water use, street by street" in text.group(1)
    assert "Council approves" not in text.group(1)  # not one of the chosen topics
    frame = re.search(r'<iframe class="mail" sandbox src="([^"]+)"', page)
    assert frame, "no sandboxed frame for the HTML part"
    shown = editor.get(frame.group(1).replace("&amp;", "&"))
    assert shown.status_code == 200 and shown.mimetype == "text/html"
    assert "Water use, street by street" in _text(shown)
    policy = shown.headers["Content-Security-Policy"]
    assert "sandbox" in policy and "style-src 'unsafe-inline'" in policy
    assert "script-src" not in policy and "frame-ancestors 'self'" in policy
    assert shown.headers["X-Frame-Options"] == "SAMEORIGIN"
    # Only the preview page may frame it, and it frames nothing else.
    assert "frame-src 'self'" in answer.headers["Content-Security-Policy"]
    assert "script-src" not in answer.headers["Content-Security-Policy"]
    # Nothing was planned or recorded.
    assert _count(app, Edition) == 0 and _count(app, Delivery) == 0


def test_the_preview_says_when_there_is_nothing_new(app: Flask, editor: FlaskClient) -> None:
    answer = editor.get("/admin/editions/preview?frequency=weekly")
    assert answer.status_code == 200
    assert "No new articles since the last weekly edition" in _text(answer)
    assert editor.get("/admin/editions/preview.html?frequency=weekly").status_code == 404


@pytest.mark.parametrize(
    ("query", "field_error"),
    [
        ("frequency=hourly", "Not a valid choice"),
        ("frequency=daily&topics=astrology", "&#39;astrology&#39; is not a valid choice"),
    ],
)
def test_a_bad_preview_choice_is_a_400_naming_it(
    app: Flask, editor: FlaskClient, query: str, field_error: str
) -> None:
    _daily_news(app)
    answer = editor.get(f"/admin/editions/preview?{query}")
    assert answer.status_code == 400
    assert field_error in _text(answer)
    assert editor.get(f"/admin/editions/preview.html?{query}").status_code == 400


def test_a_test_mail_goes_to_the_operator_alone_and_leaves_no_ledger_row(
    app: Flask, editor: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _daily_news(app)
    preview = "/admin/editions/preview?frequency=daily&topics=politics"
    answer = submit(editor, preview, "/admin/editions/preview/test")
    assert answer.status_code == 302
    assert f"A test of the daily edition was sent to {EDITOR}" in _text(
        editor.get(answer.headers["Location"])
    )
    [mail] = outbox
    assert mail.recipient == EDITOR
    parsed = parse(mail.data)
    assert parsed["To"] == EDITOR
    assert parsed["Message-ID"].startswith("<digest.preview.preview@")
    assert "Council approves the new bridge" in text_part(parsed)
    assert "Water use" not in html_part(parsed)  # politics only, as chosen
    assert _count(app, Edition) == 0 and _count(app, Delivery) == 0
    assert _audit(app) == [(f"operator:{EDITOR}", "edition.test", "daily")]


# --- sending -------------------------------------------------------------------------------


def test_the_confirmation_states_how_many_articles_and_readers(
    app: Flask, editor: FlaskClient
) -> None:
    _daily_news(app)
    page = _text(editor.get("/admin/editions/send?frequency=daily"))
    assert "Send the daily edition of 3 articles to 2 readers?" in page
    assert "Send to 2 readers</button>" in page
    assert _count(app, Edition) == 0  # asking changes nothing


def test_sending_creates_one_edition_its_ledger_and_an_audit_entry(
    app: Flask, editor: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _daily_news(app)
    answer = submit(editor, "/admin/editions/send?frequency=daily", "/admin/editions/send")
    edition_id = _edition_id(answer)
    assert _count(app, Edition) == 1
    with app.app_context():
        assert ledger.counts(edition_id) == {DeliveryState.SENT: 2}
    assert sorted(mail.recipient for mail in outbox) == ["ann@example.org", "bob@example.org"]
    assert _audit(app) == [(f"operator:{EDITOR}", "edition.send", f"edition:{edition_id}")]
    page = _text(editor.get(answer.headers["Location"]))
    assert f"Edition {edition_id} is being sent to 2 readers." in page
    assert 'data-figure="sent">2<' in page


def test_an_owner_may_send_as_an_editor_may(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _daily_news(app)
    add_operator(app, OWNER, "owner")
    sign_in(client, OWNER)
    edition_id = _edition_id(
        submit(client, "/admin/editions/send?frequency=daily", "/admin/editions/send")
    )
    assert len(outbox) == 2
    assert _audit(app) == [(f"operator:{OWNER}", "edition.send", f"edition:{edition_id}")]


@with_config(TESTING=False)
def test_a_send_goes_out_after_its_answer_even_when_the_server_never_closes_the_answer(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    # As `make run` serves the console: no broker, and a request's tasks run once it is
    # over. Werkzeug's server skips closing the answer when the browser resets the
    # connection after a redirect, as Chromium may: the send must go out all the same.
    _daily_news(app)
    add_operator(app, EDITOR, "editor")
    assert sign_in(client, EDITOR).status_code == 303
    page = _text(client.get("/admin/editions/send?frequency=daily"))
    fields = hidden_fields(form_posting_to(page, "/admin/editions/send"))
    # Unbuffered, and never closed: as the server leaves it.
    answer = client.post("/admin/editions/send", data=fields, buffered=False)
    assert answer.status_code == 302
    edition_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    deadline = time.monotonic() + 20
    while len(outbox) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(message.recipient for message in outbox) == [
        "ann@example.org",
        "bob@example.org",
    ]
    while time.monotonic() < deadline and _state(app, edition_id) != "done":
        time.sleep(0.05)
    assert _state(app, edition_id) == "done"
    with app.app_context():
        assert ledger.counts(edition_id) == {DeliveryState.SENT: 2}


def _state(app: Flask, edition_id: int) -> str | None:
    with app.app_context():
        found = planning.edition(edition_id)
        return found.state if found is not None else None


def test_a_second_submit_of_the_confirmation_sends_nothing_more(
    app: Flask, editor: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _daily_news(app)
    page = _text(editor.get("/admin/editions/send?frequency=daily"))
    fields = hidden_fields(form_posting_to(page, "/admin/editions/send"))
    first = editor.post("/admin/editions/send", data=fields)
    # A new article arrives in between: still, the click was meant for the first edition.
    add_article(app, "Late news", "Politics", minutes_ago=0.1)
    second = editor.post("/admin/editions/send", data=fields)
    assert _edition_id(first) == _edition_id(second)
    assert "nothing more was sent" in _text(editor.get(second.headers["Location"]))
    assert _count(app, Edition) == 1
    assert len(outbox) == 2


def test_an_unfinished_edition_is_offered_for_resuming_and_resumed_not_planned_again(
    app: Flask, editor: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _daily_news(app)
    with app.app_context():
        # Planned, and its workers gone before any batch ran.
        planned = planning.plan("daily")
        assert planned is not None
        edition_id = planned.id
    page = _text(editor.get("/admin/editions/send?frequency=daily"))
    assert f"The daily edition {edition_id} is still being sent. Resume it?" in page
    assert f"Resume edition {edition_id}</button>" in page
    action = f"/admin/editions/{edition_id}/resume"
    fields = hidden_fields(form_posting_to(page, action))
    first = editor.post(action, data=fields)
    assert _edition_id(first) == edition_id
    with app.app_context():
        assert ledger.counts(edition_id) == {DeliveryState.SENT: 2}
    # The same Resume again (a double click) finds nothing left and plans nothing new.
    again = editor.post(action, data=fields)
    assert _edition_id(again) == edition_id
    assert (
        f"Nothing was sent: edition {edition_id} is done: every one of its messages has an "
        "outcome." in _text(editor.get(again.headers["Location"]))
    )
    assert _count(app, Edition) == 1 and len(outbox) == 2
    assert _audit(app) == [(f"operator:{EDITOR}", "edition.resume", f"edition:{edition_id}")]
    assert editor.post("/admin/editions/99/resume", data=fields).status_code == 404
    assert editor.post(action).status_code == 400  # no CSRF token: nothing happens


@with_config(SEND_IN_READER_TIME=True, TIMEZONE="Australia/Sydney", DIGEST_HOUR=7)
def test_resume_takes_up_that_edition_and_never_plans_the_next_days_early(
    app: Flask, editor: FlaskClient, outbox: list[OutgoingMessage], clock: FakeClock
) -> None:
    # Beat plans the daily edition at 07:00 in Sydney; a reader in Los Angeles gets it at
    # 07:00 there, which is 02:00 the next day in Sydney.
    sydney = ZoneInfo("Australia/Sydney")
    clock.set(datetime(2026, 12, 4, 7, 0, tzinfo=sydney))
    add_article(app, "Council approves the new bridge", "Politics", minutes_ago=60)
    add_reader(app, "syd@example.org", ["politics"])
    add_reader(app, "la@example.org", ["politics"])
    with app.app_context():
        db.session.execute(
            update(Subscriber)
            .where(Subscriber.email == "la@example.org")
            .values(timezone="America/Los_Angeles")
        )
        db.session.commit()
        started = sending.start("daily")
        assert started is not None
        edition_id = started.edition_id
    assert [message.recipient for message in outbox] == ["syd@example.org"]

    # 01:00 the next day in Sydney: the edition still waits for Los Angeles' hour, and a new
    # article is in. The editor resumes the edition from its page.
    clock.set(datetime(2026, 12, 5, 1, 0, tzinfo=sydney))
    add_article(app, "A story of the next day", "Politics", minutes_ago=30)
    page = f"/admin/editions/{edition_id}"
    assert "Resume</button>" in _text(editor.get(page))
    answer = submit(editor, page, f"/admin/editions/{edition_id}/resume")
    assert _edition_id(answer) == edition_id
    assert f"Edition {edition_id} resumed" in _text(editor.get(answer.headers["Location"]))
    assert _count(app, Edition) == 1  # the next day's edition is not planned six hours early
    assert len(outbox) == 1  # and Los Angeles' row still waits for its hour
    with app.app_context():
        assert ledger.counts(edition_id) == {DeliveryState.SENT: 1, DeliveryState.QUEUED: 1}

    # Once Los Angeles' hour has come, resuming sends that edition to its reader there.
    clock.set(datetime(2026, 12, 4, 7, 0, tzinfo=ZoneInfo("America/Los_Angeles")))
    answer = submit(editor, page, f"/admin/editions/{edition_id}/resume")
    assert _edition_id(answer) == edition_id
    assert [message.recipient for message in outbox] == ["syd@example.org", "la@example.org"]
    assert "A story of the next day" not in text_part(parse(outbox[1].data))
    assert _count(app, Edition) == 1
    assert [action for _, action, _ in _audit(app)] == ["edition.resume", "edition.resume"]


def test_sending_with_nothing_new_sends_nothing(app: Flask, editor: FlaskClient) -> None:
    add_reader(app, "ann@example.org", ["politics"])
    page = _text(editor.get("/admin/editions/send?frequency=daily"))
    assert "there is nothing to send" in page
    assert 'action="/admin/editions/send"' not in page
    answer = editor.post(
        "/admin/editions/send", data={**_csrf(editor), "frequency": "daily", "seen": "0"}
    )
    assert answer.status_code == 302 and _count(app, Edition) == 0
    assert "nothing was sent" in _text(editor.get(answer.headers["Location"]))


@pytest.mark.parametrize(
    "fields", [{"frequency": "hourly"}, {"frequency": "daily", "seen": "-1"}, {"seen": "x"}]
)
def test_a_bad_send_form_is_a_400_naming_the_field(
    app: Flask, editor: FlaskClient, fields: dict[str, str]
) -> None:
    _daily_news(app)
    page = _text(editor.get("/admin/editions/send?frequency=daily"))
    data = {**hidden_fields(form_posting_to(page, "/admin/editions/send")), **fields}
    if "frequency" not in fields:
        del data["frequency"]
    answer = editor.post("/admin/editions/send", data=data)
    assert answer.status_code == 400
    named = "frequency" if "frequency" not in fields or fields["frequency"] == "hourly" else "seen"
    assert f"{named}:" in _text(answer)
    assert _count(app, Edition) == 0
    assert editor.get("/admin/editions/send?frequency=hourly").status_code == 400


# --- an edition's page and its progress ----------------------------------------------------


def test_progress_json_gives_the_ledgers_numbers(app: Flask, editor: FlaskClient) -> None:
    _daily_news(app)
    with app.app_context():
        planned = planning.plan("daily")
        assert planned is not None
        edition_id = planned.id
        first = db.session.scalars(
            select(Delivery.id).where(Delivery.edition_id == edition_id).order_by(Delivery.id)
        ).first()
        db.session.execute(
            update(Delivery).where(Delivery.id == first).values(state=DeliveryState.FAILED)
        )
        db.session.commit()
        expected = ledger.counts(edition_id)
    answer = editor.get(f"/admin/editions/{edition_id}/progress.json")
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    data = answer.get_json()
    assert {state: n for state, n in data["counts"].items() if n} == expected
    assert (data["state"], data["total"], data["finished"]) == ("sending", 2, 1)
    assert data["shown"]["waiting"] == 1 and data["shown"]["failed"] == 1


def test_a_sending_editions_page_follows_it_with_the_script_and_without_it(
    app: Flask, editor: FlaskClient
) -> None:
    _daily_news(app)
    with app.app_context():
        planned = planning.plan("daily")
        assert planned is not None
        edition_id = planned.id
    answer = editor.get(f"/admin/editions/{edition_id}")
    page = _text(answer)
    assert f'data-progress-url="/admin/editions/{edition_id}/progress.json"' in page
    assert '<script src="/admin/editions/progress.js" defer></script>' in page
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page
    assert f'href="/admin/editions/{edition_id}">Refresh</a>' in page
    assert "Resume</button>" in page
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    script = editor.get("/admin/editions/progress.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert b"progress" in script.data
    # Every other console page stays without scripts.
    for path in ("/admin/editions", "/admin/alerts", "/admin/editions/send?frequency=daily"):
        assert "script-src" not in editor.get(path).headers["Content-Security-Policy"], path


def test_an_editions_page_shows_its_articles_outcomes_reasons_unknowns_and_bounces(
    app: Flask, editor: FlaskClient
) -> None:
    _daily_news(app)
    add_reader(app, "cid@example.org", ["politics"])
    edition_id = _edition_id(
        submit(editor, "/admin/editions/send?frequency=daily", "/admin/editions/send")
    )
    with app.app_context():
        rows = list(
            db.session.scalars(
                select(Delivery).where(Delivery.edition_id == edition_id).order_by(Delivery.id)
            )
        )
        rows[0].state, rows[0].last_error = DeliveryState.FAILED, "550 5.1.1 No such user"
        rows[1].state, rows[1].last_error = DeliveryState.UNKNOWN, ledger.UNKNOWN_REASON
        db.session.add(
            BounceEvent(
                delivery_id=rows[0].id,
                kind="hard",
                status="5.1.1",
                diagnostic="smtp; 550 5.1.1 <***> No such user",
                source="test",
                fingerprint="b" * 64,
                # A report comes after its mail (the figures read reports from the
                # edition's creation on).
                received_at=utcnow(),
            )
        )
        db.session.commit()
    page = _text(editor.get(f"/admin/editions/{edition_id}"))
    for title in ("Council approves the new bridge", "Turnout fell", "Water use"):
        assert title in page
    assert 'data-figure="sent">1<' in page and 'data-figure="failed">1<' in page
    assert 'data-figure="unknown">1<' in page and 'data-figure="bounced">1<' in page
    assert "550 5.1.1 No such user" in page  # the most common reasons
    assert f"<code>newsletter digest unknowns {edition_id}</code>" in page
    assert "smtp; 550 5.1.1 &lt;***&gt; No such user" in page and ">5.1.1<" in page
    assert "<script" not in page  # done: nothing to follow


def test_an_unknown_edition_is_a_404(editor: FlaskClient) -> None:
    assert editor.get("/admin/editions/999").status_code == 404
    assert editor.get("/admin/editions/999/progress.json").status_code == 404


# --- alerts --------------------------------------------------------------------------------


def _alert_news(app: Flask) -> None:
    add_article(app, "Dam breaks upstream of the city", "Politics", minutes_ago=5)
    add_reader(app, "ann@example.org", ["breaking-news"])  # alerts on by default
    add_reader(app, "bob@example.org", ["breaking-news", "analytics"])
    add_reader(app, "cid@example.org", ["politics"])  # another topic
    add_reader(app, "dee@example.org", ["breaking-news"], status="unsubscribed")
    add_reader(app, "eve@example.org", ["breaking-news"], status="pending")


def _turn_alerts_off(app: Flask, client: FlaskClient, email: str) -> None:
    """As the reader does it: their preferences page, the alerts box unticked."""
    from newsletter.db.models import Subscriber

    with app.app_context():
        reader = db.session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        uid, topics = reader.uid, list(reader.topics)
        token = make_token(app, Purpose.PREFERENCES, {"s": uid})
        answer = client.post(
            f"/preferences/{token}",
            data={"topics": topics, "frequency": "daily", "alerts_shown": "1"},
        )
        assert answer.status_code == 200
        db.session.refresh(reader)
        assert reader.alerts is False


def _article_id(app: Flask) -> int:
    from newsletter.articles import store

    with app.app_context():
        return store.recent_articles(1)[0].id


def test_an_alert_reaches_only_active_readers_of_its_topic_with_alerts_on(
    app: Flask, editor: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _alert_news(app)
    _turn_alerts_off(app, app.test_client(), "bob@example.org")
    article = _article_id(app)
    page = _text(editor.get("/admin/alerts"))
    assert "Dam breaks upstream of the city" in page and 'value="breaking-news"' in page
    confirm = f"/admin/alerts/confirm?article={article}&topic=breaking-news"
    shown = _text(editor.get(confirm))
    assert (
        "Send “Dam breaks upstream of the city” now to the 1 reader of Breaking News "
        "who have alerts on?"
    ) in shown
    answer = submit(editor, confirm, "/admin/alerts")
    edition_id = _edition_id(answer)
    [mail] = outbox
    assert mail.recipient == "ann@example.org"
    parsed = parse(mail.data)
    assert parsed["Subject"] == "Breaking: Dam breaks upstream of the city | The Daily Ledger"
    [unsubscribe] = parsed.get_all("List-Unsubscribe")
    assert re.fullmatch(r"<https://news\.example\.test/unsubscribe/[^>]+>", unsubscribe)
    assert parsed.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    with app.app_context():
        edition = db.session.get(Edition, edition_id)
        assert edition is not None
        assert (edition.kind, edition.topic) == (EditionKind.ALERT, "breaking-news")
        assert ledger.counts(edition_id) == {DeliveryState.SENT: 1}
    assert _audit(app) == [(f"operator:{EDITOR}", "alert.send", f"edition:{edition_id}")]
    assert "Alert · Breaking News" in _text(editor.get(f"/admin/editions/{edition_id}"))


def test_an_alert_goes_to_the_articles_own_topic_by_default(
    app: Flask, editor: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _alert_news(app)
    confirm = f"/admin/alerts/confirm?article={_article_id(app)}&topic="
    assert "to the 1 reader of Politics" in _text(editor.get(confirm))
    _edition_id(submit(editor, confirm, "/admin/alerts"))
    assert [mail.recipient for mail in outbox] == ["cid@example.org"]


def test_a_second_alert_of_an_article_to_a_topic_is_refused_with_a_link_to_the_first(
    app: Flask, editor: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _alert_news(app)
    confirm = f"/admin/alerts/confirm?article={_article_id(app)}&topic=breaking-news"
    page = _text(editor.get(confirm))
    fields = hidden_fields(form_posting_to(page, "/admin/alerts"))
    edition_id = _edition_id(editor.post("/admin/alerts", data=fields))
    again = editor.post("/admin/alerts", data=fields)
    assert again.status_code == 409
    assert "was already alerted to breaking-news" in _text(again)
    assert f'href="/admin/editions/{edition_id}"' in _text(again)
    # The confirmation page says so before anyone presses a button.
    asked = editor.get(confirm)
    assert asked.status_code == 409
    assert "was already sent as an alert to the readers of Breaking News" in _text(asked)
    assert f'href="/admin/editions/{edition_id}"' in _text(asked)
    assert len(outbox) == 2 and _count(app, Edition) == 1


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("article=999999&topic=", "There is no article 999999."),
        ("article=abc&topic=", "Not a valid integer value."),
        ("topic=", "This field is required."),
        ("article={article}&topic=astrology", "Not a valid choice."),
    ],
)
def test_a_bad_alert_choice_is_a_400_naming_it(
    app: Flask, editor: FlaskClient, query: str, message: str
) -> None:
    _alert_news(app)
    query = query.format(article=_article_id(app))
    answer = editor.get(f"/admin/alerts/confirm?{query}")
    assert answer.status_code == 400
    assert message in _text(answer)
    assert _count(app, Edition) == 0


HUGE = "9" * 20  # past any database's integer


def test_numbers_past_any_database_integer_are_a_404_or_a_400_naming_them(
    app: Flask, editor: FlaskClient
) -> None:
    _alert_news(app)
    for path in (f"/admin/editions/{HUGE}", f"/admin/editions/{HUGE}/progress.json"):
        assert editor.get(path).status_code == 404, path
    assert editor.post(f"/admin/editions/{HUGE}/resume", data=_csrf(editor)).status_code == 404
    for before in (HUGE, "-5", " 5", "1_0"):
        answer = editor.get("/admin/editions", query_string={"before": before})
        assert answer.status_code == 400, before
        assert "before: must be an edition number" in _text(answer)
    confirm = editor.get(f"/admin/alerts/confirm?article={HUGE}&topic=")
    assert confirm.status_code == 400
    assert "Number must be between 1 and 2147483647." in _text(confirm)
    sent = editor.post("/admin/alerts", data={**_csrf(editor), "article": HUGE, "topic": ""})
    assert sent.status_code == 400
    assert "Number must be between 1 and 2147483647." in _text(sent)
    assert _count(app, Edition) == 0


# --- who may ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/admin/editions",
        "/admin/editions/preview",
        "/admin/editions/preview.html?frequency=daily",
        "/admin/editions/send?frequency=daily",
        "/admin/editions/1",
        "/admin/editions/1/progress.json",
        "/admin/editions/progress.js",
        "/admin/alerts",
        "/admin/alerts/confirm?article=1&topic=",
    ],
)
def test_anonymous_callers_are_sent_to_sign_in(client: FlaskClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 302
    assert urlsplit(answer.headers["Location"]).path == "/admin/sign-in"


def test_anonymous_posts_send_nothing(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _alert_news(app)
    add_article(app, "Turnout fell in every ward", "Politics")
    # The CSRF token of a real session, so that only the sign-in check stands in the way.
    add_operator(app, EDITOR, "editor")
    sign_in(client, EDITOR)
    page = _text(client.get("/admin/editions/send?frequency=daily"))
    fields = hidden_fields(form_posting_to(page, "/admin/editions/send"))
    sign_out = hidden_fields(form_posting_to(page, "/admin/sign-out"))
    assert client.post("/admin/sign-out", data=sign_out).status_code == 303
    for path, data in [
        ("/admin/editions/send", fields),
        ("/admin/editions/preview/test", {**fields, "topics": []}),
        ("/admin/alerts", {**fields, "article": str(_article_id(app)), "topic": ""}),
    ]:
        answer = client.post(path, data=data)
        assert answer.status_code == 302, path
        assert urlsplit(answer.headers["Location"]).path == "/admin/sign-in"
    assert _count(app, Edition) == 0 and outbox == []
