"""Breaking-news alerts: the mail a reader gets, sent exactly once, apart from the digests.

Alerts are planned and sent with ``sending.start_alert``, the call behind the console and the
API; without a broker (and in tests) its batches run before it returns.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import func, select

from newsletter.articles import store
from newsletter.clock import utcnow
from newsletter.db.models import Delivery, DeliveryState, Edition, EditionKind, Subscriber
from newsletter.digests import alerts, ledger, planning, sending
from newsletter.digests.content import load_content
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.readers import subscriptions
from newsletter.readers.consent import Origin
from tests.support.digest_helpers import add_article, add_reader, html_part, parse, text_part

SUMMARY = "<p>Water reached the old town <b>before noon</b>.</p>"


def _newest_article(app: Flask) -> int:
    with app.app_context():
        return store.recent_articles(1)[0].id


def _alert(app: Flask, article_id: int, topic: str | None = None) -> sending.Started:
    with app.app_context():
        return sending.start_alert(article_id, topic)


def test_the_alert_mail_shows_the_article_and_how_to_stop_alerts_or_everything(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    url = add_article(
        app,
        "Dam breaks upstream of the city",
        "Politics",
        summary=SUMMARY,
        author="Maria Okafor",
        source="Ledger staff",
        minutes_ago=4,
    )
    uid = add_reader(app, "ann@example.org", ["breaking-news"], name="Ann")
    started = _alert(app, _newest_article(app), "breaking-news")
    [mail] = outbox
    parsed = parse(mail.data)
    assert parsed["Subject"] == "Breaking: Dam breaks upstream of the city | The Daily Ledger"
    assert parsed["Message-ID"].startswith(f"<digest.{started.edition_id}.{uid}@")
    assert parsed.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    [unsubscribe_header] = parsed.get_all("List-Unsubscribe")

    text = text_part(parsed)
    assert "\n\nHello Ann,\n" in text
    assert "BREAKING NEWS - POLITICS" in text
    assert "Dam breaks upstream of the city" in text and url in text
    assert "Water reached the old town before noon." in text and "Maria Okafor" in text
    assert "<b>" not in text
    assert "follow Breaking News at The Daily Ledger and have breaking-news alerts on" in text
    turn_off = re.search(r"Turn alerts off or change your topics: (\S+)", text)
    stop_all = re.search(r"Unsubscribe from everything: (\S+)", text)
    assert turn_off and "/preferences/" in turn_off.group(1)
    assert stop_all and unsubscribe_header == f"<{stop_all.group(1)}>"

    html = html_part(parsed)
    assert f'<a href="{url}"' in html and "Dam breaks upstream of the city" in html
    assert "<b>before noon</b>" in html  # the summary's sanitized markup
    assert f'<a href="{turn_off.group(1)}"' in html and "Turn alerts off" in html
    assert f'<a href="{stop_all.group(1)}"' in html and "Unsubscribe from everything" in html

    # The links do what they say: the preferences page offers the alerts box ticked, and
    # the one-click unsubscribe works without a cookie.
    client = app.test_client()
    preferences = client.get(urlsplit(turn_off.group(1)).path)
    assert preferences.status_code == 200
    assert 'checked id="alerts"' in preferences.get_data(as_text=True)
    one_click = client.post(
        urlsplit(stop_all.group(1)).path, data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 200
    with app.app_context():
        reader = db.session.scalars(select(Subscriber)).one()
        assert reader.status == "unsubscribed"


def test_an_alert_is_mailed_once_however_often_its_batches_run(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    add_article(app, "Dam breaks upstream of the city", "Politics", minutes_ago=4)
    for number in range(5):
        add_reader(app, f"reader{number}@example.org", ["politics"])
    started = _alert(app, _newest_article(app))
    assert started.readers == 5 and len(outbox) == 5
    with app.app_context():
        first, last = db.session.execute(
            select(func.min(Delivery.id), func.max(Delivery.id)).where(
                Delivery.edition_id == started.edition_id
            )
        ).one()
        again = sending.send_batch(started.edition_id, first, last)
        assert (again.sent, again.failed, again.skipped) == (0, 0, 0)
        assert sending.dispatch(started.edition_id) == 0  # nothing left to queue
        assert ledger.counts(started.edition_id) == {DeliveryState.SENT: 5}
        edition = db.session.get(Edition, started.edition_id)
        assert edition is not None and edition.state == "done"
    assert len(outbox) == 5
    assert sorted(mail.recipient for mail in outbox) == [
        f"reader{number}@example.org" for number in range(5)
    ]


def test_a_reader_who_turns_alerts_off_or_drops_the_topic_after_planning_is_skipped(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    add_article(app, "Dam breaks upstream of the city", "Politics", minutes_ago=4)
    for name in ("off", "moved", "kept"):
        add_reader(app, f"{name}@example.org", ["politics", "analytics"])
    with app.app_context():
        started = sending.start_alert(_newest_article(app), queue=False)  # planned, not sent
        assert started.readers == 3
        # Before its batch runs, one reader turns alerts off and one drops politics.
        origin = Origin(source="preferences-page")
        off, moved = (subscriptions.by_email(f"{n}@example.org") for n in ("off", "moved"))
        assert off is not None and moved is not None
        subscriptions.update_preferences(off, off.topics, "daily", origin, alerts=False)
        subscriptions.update_preferences(moved, ["analytics"], "daily", origin, alerts=True)
        db.session.commit()
        first, last = db.session.execute(
            select(func.min(Delivery.id), func.max(Delivery.id)).where(
                Delivery.edition_id == started.edition_id
            )
        ).one()
        result = sending.send_batch(started.edition_id, first, last)
        assert (result.sent, result.skipped) == (1, 2)
        rows = dict(
            db.session.execute(
                select(Subscriber.email, Delivery.last_error)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .where(Delivery.edition_id == started.edition_id, Delivery.state == "skipped")
            ).all()
        )
    assert [mail.recipient for mail in outbox] == ["kept@example.org"]
    assert rows == {
        "off@example.org": "the reader turned alerts off",
        "moved@example.org": "the reader no longer follows politics",
    }
    # Both still get their digests: alerts off stops only alerts.
    outbox.clear()
    add_article(app, "Water use, street by street", "Analytics")
    with app.app_context():
        assert sending.start("daily") is not None
    assert sorted(mail.recipient for mail in outbox) == [
        "kept@example.org",
        "moved@example.org",
        "off@example.org",
    ]


def test_the_same_article_is_alerted_to_a_topic_once_and_to_another_topic_again(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    add_article(app, "Dam breaks upstream of the city", "Politics", minutes_ago=4)
    add_reader(app, "ann@example.org", ["politics", "breaking-news"])
    article_id = _newest_article(app)
    first = _alert(app, article_id, "politics")
    with app.app_context(), pytest.raises(alerts.AlertRefused) as refused:
        sending.start_alert(article_id, "politics")
    assert refused.value.edition_id == first.edition_id
    assert f"(edition {first.edition_id})" in str(refused.value)
    second = _alert(app, article_id, "breaking-news")
    assert second.edition_id != first.edition_id
    with app.app_context():
        assert alerts.previous(article_id, "breaking-news") == second.edition_id
        editions = db.session.scalar(select(func.count()).select_from(Edition))
    assert editions == 2 and len(outbox) == 2  # one per topic, as asked


@pytest.mark.parametrize(("article", "topic"), [(999999, None), (None, "astrology")])
def test_an_alert_of_no_article_or_to_no_topic_is_refused_and_creates_nothing(
    app: Flask, article: int | None, topic: str | None
) -> None:
    add_article(app, "Dam breaks upstream of the city", "Politics", minutes_ago=4)
    with app.app_context():
        with pytest.raises(alerts.AlertRefused) as refused:
            sending.start_alert(article or _newest_article(app), topic)
        assert refused.value.edition_id is None
        assert db.session.scalar(select(func.count()).select_from(Edition)) == 0
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_an_alert_neither_moves_the_digests_window_nor_counts_as_sent_in_a_digest(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    add_article(app, "Yesterday's budget", "Politics", minutes_ago=180)
    add_reader(app, "ann@example.org", ["politics"], frequency="daily")
    with app.app_context():
        # A digest two hours ago took what there was then.
        earlier = planning.plan("daily", now=utcnow() - timedelta(hours=2))
        assert earlier is not None
        earlier_id = earlier.id
        sending.dispatch(earlier_id)
    add_article(app, "Dam breaks upstream of the city", "Politics", minutes_ago=60)
    alerted = _newest_article(app)
    alert = _alert(app, alerted)
    with app.app_context():
        assert db.session.get(Edition, alert.edition_id).kind == EditionKind.ALERT  # type: ignore[union-attr]
        latest = planning.latest("daily")
        assert latest is not None and latest.id == earlier_id  # the alert is no digest
        # Published after the last digest and before the alert: still news for the digest.
        chosen = planning.choose_articles("daily", utcnow())
        assert [article.id for article in chosen] == [alerted]
        digest = planning.plan("daily")
        assert digest is not None
        digest_id = digest.id
        assert [view.title for view in load_content(digest_id).articles] == [
            "Dam breaks upstream of the city"
        ]
        sending.dispatch(digest_id)
    subjects = [parse(mail.data)["Subject"] for mail in outbox]
    assert subjects == [
        "Yesterday's budget | The Daily Ledger daily digest",
        "Breaking: Dam breaks upstream of the city | The Daily Ledger",
        "Dam breaks upstream of the city | The Daily Ledger daily digest",
    ]
