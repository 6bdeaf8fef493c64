"""A reader's time zone: from the browser at signup, checked, kept, and changed in preferences."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter.db.models import ConsentEvent, Subscriber
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.readers import zones
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

EMBED = "https://www.ledger.example"


def _zone(app: Flask, email: str = "reader@example.com") -> str | None:
    with app.app_context():
        return db.session.scalars(
            select(Subscriber.timezone).where(Subscriber.email == email)
        ).one()


def _details(app: Flask) -> list[tuple[str, dict[str, Any]]]:
    with app.app_context():
        events = db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id))
        return [(event.action, dict(event.detail)) for event in events]


def _confirm(client: FlaskClient, outbox: list[OutgoingMessage]) -> None:
    path = path_of(link_from(outbox[-1], "/confirm/"))
    page = client.get(path).get_data(as_text=True)
    assert client.post(path, data=form_fields(page)).status_code == 200


# ---- signup


def test_the_zone_the_browser_gave_becomes_the_readers_when_they_confirm(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    answer = signup(client, "reader@example.com", timezone="America/New_York")
    assert answer.history[0].status_code == 303
    # Like the other choices, it waits in the request until the link is used.
    assert _zone(app) is None
    assert _details(app)[0][1]["timezone"] == "America/New_York"
    _confirm(client, outbox)
    assert _zone(app) == "America/New_York"
    assert _details(app)[1] == (
        "confirm",
        {
            "topics": ["analytics", "breaking-news"],
            "frequency": "weekly",
            "timezone": "America/New_York",
        },
    )


@pytest.mark.parametrize(
    "sent",
    [
        "",
        "Mars/Olympus_Mons",
        "../../../etc/passwd",
        "Europe/Berlin\r\nBcc: x",
        "x" * 5000,
        "localtime",
    ],
)
def test_a_missing_or_unknown_zone_means_the_sites_and_is_never_an_error(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage], sent: str
) -> None:
    answer = signup(client, "reader@example.com", timezone=sent)
    assert answer.history[0].status_code == 303
    assert "Check your inbox" in answer.get_data(as_text=True)
    assert "timezone" not in _details(app)[0][1]
    _confirm(client, outbox)
    assert _zone(app) is None


def test_an_old_name_a_browser_still_reports_is_accepted(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    signup(client, "reader@example.com", timezone="Asia/Calcutta")
    _confirm(client, outbox)
    assert _zone(app) == "Asia/Calcutta"


@with_config(EMBED_ORIGINS=[EMBED])
def test_the_embedded_box_can_pass_the_zone_too(app: Flask, outbox: list[OutgoingMessage]) -> None:
    box = app.test_client(use_cookies=False)
    started = box.get("/subscribe/embed-token", headers={"Origin": EMBED}).json["started"]  # type: ignore[index]
    posted = box.post(
        "/subscribe",
        data={
            "email": "ann@example.org",
            "consent": "y",
            "started": started,
            "timezone": "Europe/Berlin",
        },
        headers={"Origin": EMBED},
    )
    assert posted.status_code == 303
    _confirm(app.test_client(), outbox)
    assert _zone(app, "ann@example.org") == "Europe/Berlin"


def test_the_signup_page_runs_its_one_script_and_no_other_page_may_run_any(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    page = client.get("/subscribe")
    policy = page.headers["Content-Security-Policy"]
    # Scripts from this origin only: no inline script, nothing from elsewhere, no fetches.
    assert "script-src 'self'" in policy and "connect-src" not in policy, policy
    html = page.get_data(as_text=True)
    assert re.findall(r"<script\b[^>]*>", html) == ['<script defer src="/static/signup.js">']
    assert '<input id="timezone" name="timezone" type="hidden" value="">' in html
    script = client.get("/static/signup.js")
    assert script.status_code == 200 and "javascript" in script.mimetype
    assert "Intl.DateTimeFormat().resolvedOptions().timeZone" in script.get_data(as_text=True)
    assert 'getElementById("timezone")' in script.get_data(as_text=True)
    # A post with a mistake shows the form again, script and the zone sent included.
    again = client.post("/subscribe", data={**form_fields(html), "timezone": "Europe/Berlin"})
    assert again.status_code == 400
    assert "script-src 'self'" in again.headers["Content-Security-Policy"]
    assert 'name="timezone" type="hidden" value="Europe/Berlin"' in again.get_data(as_text=True)

    signup(client, "reader@example.com")
    uid = add_subscriber(app, "ann@example.org")
    for other in (
        client.get("/subscribe/check-inbox"),
        client.get(path_of(link_from(outbox[-1], "/confirm/"))),
        client.get(f"/preferences/{make_token(app, Purpose.PREFERENCES, {'s': uid})}"),
        client.get(f"/unsubscribe/{make_token(app, Purpose.UNSUBSCRIBE, {'s': uid})}"),
        client.get("/archive"),
    ):
        assert "script-src" not in other.headers["Content-Security-Policy"]
        assert "<script" not in other.get_data(as_text=True)


# ---- preferences


@pytest.fixture
def link(app: Flask) -> str:
    uid = add_subscriber(app, topics=("analytics",), frequency="daily")
    return f"/preferences/{make_token(app, Purpose.PREFERENCES, {'s': uid})}"


def _options(html: str) -> dict[str, str]:
    select_tag = html.split(
        '<select aria-describedby="timezone-hint" id="timezone" name="timezone">'
    )[1]
    select_tag = select_tag.split("</select>")[0]
    return dict(re.findall(r'<option (?:selected )?value="([^"]*)">([^<]*)</option>', select_tag))


def _selected(html: str) -> str | None:
    found = re.search(r'<option selected value="([^"]*)">', html)
    return found.group(1) if found else None


def test_preferences_offer_every_place_by_region_without_a_script(
    client: FlaskClient, link: str
) -> None:
    html = client.get(link).get_data(as_text=True)
    options = _options(html)
    assert options[""] == "The newsletter's own (UTC)"
    assert options["Europe/Berlin"].startswith("Berlin, UTC+0")
    assert options["America/Argentina/Buenos_Aires"] == "Buenos Aires (Argentina), UTC-03:00"
    assert options["Asia/Kathmandu"] == "Kathmandu, UTC+05:45"
    assert len(options) > 300
    for region in ("Africa", "America", "Asia", "Australia", "Europe", "Pacific"):
        assert f'<optgroup label="{region}">' in html
    assert _selected(html) is None  # the newsletter's own, the first option
    assert "<script" not in html


@with_config(SEND_IN_READER_TIME=True, DIGEST_HOUR=6)
def test_saving_a_zone_keeps_it_logs_it_and_shows_it_chosen(
    app: Flask, client: FlaskClient, link: str
) -> None:
    page = client.get(link).get_data(as_text=True)
    assert "Your digest comes at 06:00 in this time zone." in page
    saved = client.post(
        link, data={**form_fields(page), "frequency": "daily", "timezone": "Asia/Tokyo"}
    )
    assert saved.status_code == 200
    assert _zone(app) == "Asia/Tokyo"
    assert _selected(saved.get_data(as_text=True)) == "Asia/Tokyo"
    assert _selected(client.get(link).get_data(as_text=True)) == "Asia/Tokyo"
    assert _details(app)[-1][1]["timezone"] == "Asia/Tokyo"
    # The first choice gives the reader the newsletter's zone again.
    client.post(link, data={**form_fields(page), "frequency": "daily", "timezone": ""})
    assert _zone(app) is None
    assert _details(app)[-1][1]["timezone"] is None


def test_a_zone_that_is_no_choice_is_refused_with_the_field_named_and_nothing_changes(
    app: Flask, client: FlaskClient, link: str
) -> None:
    page = client.get(link).get_data(as_text=True)
    before = db_state(app)
    for wrong in ("Nowhere/City", "Factory", "<b>UTC</b>"):
        answer = client.post(
            link, data={**form_fields(page), "frequency": "daily", "timezone": wrong}
        )
        assert answer.status_code == 400
        assert "Choose a time zone from the list." in answer.get_data(as_text=True)
        assert "<b>" not in answer.get_data(as_text=True)
    assert db_state(app) == before and _zone(app) is None


def test_a_reader_with_an_old_zone_name_sees_it_chosen(
    app: Flask, client: FlaskClient, link: str
) -> None:
    with app.app_context():
        db.session.execute(Subscriber.__table__.update().values(timezone="Asia/Calcutta"))
        db.session.commit()
    html = client.get(link).get_data(as_text=True)
    assert _selected(html) == "Asia/Calcutta"
    assert _options(html)["Asia/Calcutta"] == "Calcutta, UTC+05:30"


def test_a_page_without_the_field_leaves_the_zone_as_it_was(
    app: Flask, client: FlaskClient, link: str
) -> None:
    with app.app_context():
        db.session.execute(Subscriber.__table__.update().values(timezone="Europe/Berlin"))
        db.session.commit()
    page = client.get(link).get_data(as_text=True)
    assert client.post(link, data={**form_fields(page), "frequency": "weekly"}).status_code == 200
    assert _zone(app) == "Europe/Berlin"


# ---- what the reader is told, and can take with them


@with_config(SEND_IN_READER_TIME=True, DIGEST_WEEKDAY="monday")
def test_the_welcome_says_when_digests_come_in_the_readers_own_time(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    signup(client, "reader@example.com", timezone="Asia/Tokyo", frequency="weekly")
    _confirm(client, outbox)
    text, html = mail_parts(outbox[-1])
    # Tokyo's Monday 7:00 comes before the site's (UTC): its edition arrives a day later.
    assert "every Tuesday at about 07:00 (Asia/Tokyo time)" in " ".join(text.split())
    assert "Asia/Tokyo time" in html


def test_without_sending_in_readers_time_the_welcome_keeps_the_sites_clock(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    signup(client, "reader@example.com", timezone="Asia/Tokyo", frequency="weekly")
    _confirm(client, outbox)
    text, _ = mail_parts(outbox[-1])
    assert "every Monday at about 07:00 (UTC time)" in " ".join(text.split())


def test_the_readers_data_export_holds_their_zone(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage], tmp_path: Any
) -> None:
    signup(client, "reader@example.com", timezone="Europe/Berlin")
    _confirm(client, outbox)
    out = tmp_path / "data.json"
    result = app.test_cli_runner().invoke(
        args=["subscribers", "export-data", "reader@example.com", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["subscriber"]["timezone"] == "Europe/Berlin"


def test_zone_names_are_checked_against_the_database() -> None:
    assert zones.clean("Europe/Berlin") == "Europe/Berlin"
    assert zones.clean("europe/berlin") is None
    assert zones.clean(None) is None and zones.clean(3) is None
    assert zones.clean("Factory") is None
