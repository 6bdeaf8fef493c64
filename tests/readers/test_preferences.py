"""The preferences page behind a signed link: topics and how often."""

from __future__ import annotations

import re
from typing import Any

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
    signed_ago,
    signup,
)


def _checked(html: str, name: str) -> set[str]:
    """The values of the ticked checkboxes or radio buttons called ``name``."""
    values = set()
    for tag in re.findall(r"<input\b[^>]*>", html):
        if f'name="{name}"' in tag and re.search(r"\schecked\b", tag):
            found = re.search(r'value="([^"]*)"', tag)
            values.add(found.group(1) if found else "")
    return values


def _reader(app: Flask) -> tuple[set[str], str]:
    with app.app_context():
        subscriber = db.session.scalars(select(Subscriber)).one()
        return set(subscriber.topics), subscriber.frequency


def _events(app: Flask) -> list[ConsentEvent]:
    with app.app_context():
        rows = db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
        db.session.expunge_all()
        return list(rows)


@pytest.fixture
def link(app: Flask) -> str:
    uid = add_subscriber(app, topics=("analytics", "culture"), frequency="weekly")
    return f"/preferences/{make_token(app, Purpose.PREFERENCES, {'s': uid})}"


def _save(client: FlaskClient, link: str, **data: Any) -> Any:
    page = client.get(link)
    return client.post(link, data={**form_fields(page.get_data(as_text=True)), **data})


def test_the_link_in_a_mail_shows_the_readers_current_choices(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    add_subscriber(app, topics=("politics", "technology"), frequency="daily")
    signup(client, "reader@example.com")  # an active reader is sent their links instead
    link = path_of(link_from(outbox[0], "/preferences/"))

    page = client.get(link)

    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert _checked(html, "topics") == {"politics", "technology"}
    assert _checked(html, "frequency") == {"daily"}
    assert "Breaking News" in html, "every topic is offered"


def test_get_changes_nothing(app: Flask, client: FlaskClient, link: str) -> None:
    before = db_state(app)
    client.get(link)
    assert db_state(app) == before


def test_saving_changes_topics_and_frequency_and_logs_it(
    app: Flask, client: FlaskClient, link: str
) -> None:
    client.environ_base["REMOTE_ADDR"] = "192.0.2.44"
    response = _save(client, link, topics=["politics", "business"], frequency="daily")

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Saved" in html
    assert _checked(html, "topics") == {"politics", "business"}
    assert _checked(html, "frequency") == {"daily"}
    assert _reader(app) == ({"politics", "business"}, "daily")
    [event] = _events(app)
    assert (event.action, event.source, event.ip) == (
        "preferences",
        "preferences-page",
        "192.0.2.44",
    )
    # The alerts box was left unticked: a browser sends nothing for it, so alerts are off.
    assert event.detail == {
        "topics": ["politics", "business"],
        "frequency": "daily",
        "alerts": False,
    }
    assert client.get(link).status_code == 200
    assert _checked(client.get(link).get_data(as_text=True), "topics") == {"politics", "business"}


def _alerts(app: Flask) -> bool:
    with app.app_context():
        return bool(db.session.scalars(select(Subscriber)).one().alerts)


def test_alerts_are_on_until_the_reader_turns_them_off_and_back_on(
    app: Flask, client: FlaskClient, link: str
) -> None:
    assert _alerts(app) is True
    assert _checked(client.get(link).get_data(as_text=True), "alerts") == {"y"}

    _save(client, link, topics=["politics"], frequency="daily")  # box unticked
    assert _alerts(app) is False
    assert _checked(client.get(link).get_data(as_text=True), "alerts") == set()

    _save(client, link, topics=["politics"], frequency="daily", alerts="y")
    assert _alerts(app) is True
    assert [event.detail["alerts"] for event in _events(app)] == [False, True]


def test_a_page_from_before_the_alerts_box_leaves_alerts_as_they_were(
    app: Flask, client: FlaskClient, link: str
) -> None:
    # Such a page has neither the box nor its marker: saving it is no "alerts off".
    page = client.get(link).get_data(as_text=True)
    fields = {k: v for k, v in form_fields(page).items() if k != "alerts_shown"}
    saved = client.post(link, data={**fields, "topics": ["politics"], "frequency": "daily"})
    assert saved.status_code == 200
    assert _alerts(app) is True
    assert _reader(app) == ({"politics"}, "daily")
    assert [event.detail["alerts"] for event in _events(app)] == [True]


RULE = "None ticked means every topic."


def test_no_topic_ticked_means_every_topic_here_as_at_signup_and_both_pages_say_so(
    app: Flask, client: FlaskClient, link: str
) -> None:
    # One rule for both forms (topics.clean): unticking them all is not an error here.
    response = _save(client, link, frequency="daily")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Saved. Your next digest will follow these choices." in html
    every = set(app.config["TOPICS"])
    with app.app_context():
        from newsletter.readers import topics

        assert _reader(app) == (set(topics.available()), "daily")
        assert {topics.available()[slug] for slug in _reader(app)[0]} == every
    assert "/unsubscribe/" in html, "leaving is still one link away"
    for page in (client.get(link), client.get("/subscribe")):
        fieldset = re.search(
            r"<legend>Topics</legend>(.*?)</fieldset>", page.get_data(as_text=True), re.S
        )
        assert fieldset and RULE in fieldset.group(1)


@pytest.mark.parametrize("csrf", [None, "", "forged-token"], ids=["absent", "empty", "forged"])
def test_saving_is_judged_by_the_links_token_alone(app: Flask, link: str, csrf: str | None) -> None:
    # No session and whatever a CSRF field says: the signed link is the credential, so a
    # mail app that opened the page in one view and posts from another still saves.
    data: dict[str, Any] = {"topics": ["politics"], "frequency": "daily"}
    if csrf is not None:
        data["csrf_token"] = csrf
    response = app.test_client(use_cookies=False).post(link, data=data)
    assert response.status_code == 200
    assert _reader(app)[0] == {"politics"}
    forged = app.test_client(use_cookies=False).post(link[:-2] + "xx", data=data)
    assert forged.status_code == 400


def test_unknown_topics_are_ignored(app: Flask, client: FlaskClient, link: str) -> None:
    topics = ["politics", "sport", "<script>x</script>"]
    response = _save(client, link, topics=topics, frequency="weekly")
    assert response.status_code == 200
    assert _reader(app)[0] == {"politics"}
    assert "<script>x" not in response.get_data(as_text=True)


@pytest.mark.parametrize("frequency", ["hourly", "", "daily\r\nX: y"])
def test_an_unknown_frequency_is_refused_and_nothing_changes(
    app: Flask, client: FlaskClient, link: str, frequency: str
) -> None:
    before = db_state(app)
    response = _save(client, link, topics=["politics"], frequency=frequency)
    assert response.status_code == 400
    assert 'role="alert"' in response.get_data(as_text=True)
    assert db_state(app) == before


def test_saving_preferences_never_subscribes_again(app: Flask, client: FlaskClient) -> None:
    uid = add_subscriber(app, status="unsubscribed")
    link = f"/preferences/{make_token(app, Purpose.PREFERENCES, {'s': uid})}"
    _save(client, link, topics=["culture"], frequency="daily")
    with app.app_context():
        assert db.session.scalar(select(Subscriber.status)) == "unsubscribed"


def test_a_preferences_link_keeps_working_for_months(app: Flask, client: FlaskClient) -> None:
    uid = add_subscriber(app)
    with signed_ago(days=200):
        token = make_token(app, Purpose.PREFERENCES, {"s": uid})
    saved = _save(client, f"/preferences/{token}", topics=["analytics"], frequency="daily")
    assert saved.status_code == 200
    assert _reader(app)[1] == "daily"


def test_a_link_for_a_reader_who_is_gone_is_a_clear_4xx(app: Flask, client: FlaskClient) -> None:
    token = make_token(app, Purpose.PREFERENCES, {"s": "erased-reader"})
    response = client.get(f"/preferences/{token}")
    assert response.status_code == 400
    assert "This link is not valid" in response.get_data(as_text=True)
