"""A reader's language: chosen at signup (from the browser's by default), kept, changed in
preferences, and spoken by every page reached through their links and every mail to them."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from newsletter.db.models import ConsentEvent, ConsentWording, Subscriber
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.tokens import Purpose
from tests.conftest import (
    add_subscriber,
    form_fields,
    link_from,
    mail_parts,
    make_token,
    path_of,
    with_config,
)
from tests.support.catalog import english_in

THREE = with_config(LANGUAGES=["en", "de", "ar"])
GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
GERMAN_CONSENT = (
    "Ihre Angaben sind sicher. Mit Ihrer Anmeldung stimmen Sie zu, E-Mails von uns zu "
    "erhalten, und Sie können sich jederzeit wieder abmelden."
)


def _text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def _subject(message: OutgoingMessage) -> str:
    from email import message_from_bytes, policy

    return str(message_from_bytes(message.data, policy=policy.default)["Subject"])


def _html_tag(page: str) -> str:
    found = re.search(r"<html[^>]*>", page)
    assert found, "no <html> tag"
    return found.group(0)


def _sign_up(
    client: FlaskClient, email: str = "leser@example.de", *, query: str = "", **fields: Any
) -> Any:
    """The signup form as shown to this client (its Accept-Language), filled in and sent."""
    headers = fields.pop("headers", {})
    page = client.get(f"/subscribe{query}", headers=headers)
    data: dict[str, Any] = {
        **form_fields(_text(page)),
        "email": email,
        "name": "Lea",
        "consent": "y",
        "frequency": "weekly",
        "topics": ["politics"],
        **fields,
    }
    action = re.search(r'<form method="post" action="([^"]+)"', _text(page))
    assert action
    return client.post(action.group(1).replace("&amp;", "&"), data=data, headers=headers)


def _reader(app: Flask, email: str = "leser@example.de") -> Subscriber:
    with app.app_context():
        found = db.session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        db.session.expunge(found)
        return found


def _set_language(app: Flask, email: str, language: str | None) -> None:
    with app.app_context():
        db.session.execute(
            update(Subscriber).where(Subscriber.email == email).values(language=language)
        )
        db.session.commit()


def _events(app: Flask) -> list[ConsentEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def _wording(app: Flask, version: str | None) -> str:
    with app.app_context():
        found = db.session.get(ConsentWording, version)
        assert found is not None
        return str(found.text)


def _version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- the signup page ------------------------------------------------------------------------


def test_with_one_language_there_is_nothing_to_choose(client: FlaskClient) -> None:
    page = _text(client.get("/subscribe", headers=GERMAN))
    assert _html_tag(page) == '<html lang="en" dir="ltr">'
    assert 'name="language"' not in page
    assert "Get the latest news" in page


@THREE
def test_the_signup_page_speaks_the_browsers_language_and_offers_the_others(
    client: FlaskClient,
) -> None:
    page = _text(client.get("/subscribe", headers=GERMAN))
    assert _html_tag(page) == '<html lang="de" dir="ltr">'
    assert "<h1>Die neuesten Nachrichten</h1>" in page
    assert GERMAN_CONSENT in page
    options = re.findall(r'<option lang="(\w+)" (selected )?value="\w+">([^<]+)</option>', page)
    assert options == [("en", "", "English"), ("de", "selected ", "Deutsch"), ("ar", "", "العربية")]
    # The answer to this form speaks as the form did.
    assert 'action="/subscribe?lang=de"' in page


@THREE
def test_lang_in_the_address_wins_over_the_browser_and_an_unknown_one_is_ignored(
    client: FlaskClient,
) -> None:
    arabic = _text(client.get("/subscribe?lang=ar", headers=GERMAN))
    assert _html_tag(arabic) == '<html lang="ar" dir="rtl">'
    assert "احصل على آخر الأخبار" in arabic
    unknown = _text(client.get("/subscribe?lang=fr"))
    assert _html_tag(unknown) == '<html lang="en" dir="ltr">'
    regional = _text(client.get("/subscribe?lang=de-AT"))
    assert _html_tag(regional) == '<html lang="de" dir="ltr">'


@THREE
def test_a_mistake_is_pointed_out_in_the_pages_language(client: FlaskClient) -> None:
    empty = _sign_up(client, "", headers=GERMAN)
    assert empty.status_code == 400
    assert "Geben Sie Ihre E-Mail-Adresse ein." in _text(empty)
    wrong = _sign_up(client, "not-an-address", headers=GERMAN)
    assert "Diese E-Mail-Adresse ist ungültig." in _text(wrong)
    unticked = _sign_up(client, headers=GERMAN, consent="")
    assert "Setzen Sie das Häkchen" in _text(unticked)
    # In English the validator's own words still say what is wrong.
    english = _sign_up(client, "not-an-address")
    assert "An email address must have an @-sign." in _text(english)


# --- signing up -----------------------------------------------------------------------------


@THREE
def test_a_signup_in_german_is_kept_and_its_mail_and_answer_are_german(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    answer = _sign_up(client, headers=GERMAN)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/subscribe/check-inbox?lang=de"
    page = _text(client.get(answer.headers["Location"]))
    assert "Sehen Sie in Ihrem Postfach nach" in page
    assert _reader(app).language == "de"

    [mail] = outbox
    assert _subject(mail) == "Bestätigen Sie Ihr Abonnement von The Daily Ledger"
    text, html = mail_parts(mail)
    assert "Bitte bestätigen Sie, dass Sie den Newsletter von The Daily Ledger" in text
    assert "Der Link gilt 7 Tage." in text
    assert '<html lang="de" dir="ltr" ' in html
    assert "Abonnement bestätigen" in html

    [event] = _events(app)
    assert event.detail["language"] == "de"
    # What the reader agreed to is what the German page showed.
    assert event.consent_version == _version(GERMAN_CONSENT)
    assert _wording(app, event.consent_version) == GERMAN_CONSENT


@THREE
def test_the_forms_choice_wins_over_the_page_but_the_wording_is_the_one_shown(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _sign_up(client, language="ar")  # an English page, Arabic chosen
    assert _reader(app).language == "ar"
    assert _subject(outbox[0]) == "أكّد اشتراكك في The Daily Ledger"
    [event] = _events(app)
    assert _wording(app, event.consent_version).startswith("Your information is secure.")


@THREE
def test_a_language_the_site_does_not_offer_falls_back_to_the_pages(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _sign_up(client, headers=GERMAN, language="fr")
    assert _reader(app).language == "de"


@with_config(LANGUAGES=["de", "en"])
def test_the_first_language_is_the_sites_own(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    assert _html_tag(_text(client.get("/subscribe"))) == '<html lang="de" dir="ltr">'
    _sign_up(client, query="?lang=fr")
    assert _subject(outbox[0]).startswith("Bestätigen Sie")


@with_config(
    LANGUAGES=["en", "de"],
    CONSENT_TEXT={"en": "We send you the news. Leave any time.", "de": "Wir schicken Nachrichten."},
)
def test_each_language_has_its_own_consent_wording_and_version(
    app: Flask, client: FlaskClient
) -> None:
    assert "Wir schicken Nachrichten." in _text(client.get("/subscribe", headers=GERMAN))
    _sign_up(client, headers=GERMAN)
    _sign_up(client, "reader@example.com")
    german, english = _events(app)
    assert german.consent_version == _version("Wir schicken Nachrichten.")
    assert english.consent_version == _version("We send you the news. Leave any time.")
    assert _wording(app, english.consent_version) == "We send you the news. Leave any time."


# --- the reader's links ---------------------------------------------------------------------


@THREE
def test_confirmation_and_welcome_speak_the_readers_language_whatever_the_browser(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _sign_up(client, headers=GERMAN)
    confirm = path_of(link_from(outbox[0], "/confirm/"))
    page = _text(client.get(confirm))  # an English browser
    assert _html_tag(page) == '<html lang="de" dir="ltr">'
    assert "Bestätigen Sie Ihr Abonnement" in page
    assert re.search(r'<option lang="de" selected value="de">Deutsch</option>', page)

    done = client.post(confirm, data={"name": "Lea", "frequency": "weekly", "language": "de"})
    assert "Sie sind angemeldet" in _text(done)
    welcome = outbox[1]
    assert _subject(welcome) == "Willkommen bei The Daily Ledger"
    text, _ = mail_parts(welcome)
    assert "jeden Montag gegen 07:00 Uhr (Zeitzone UTC)" in text
    assert "Was Sie erhalten: ein wöchentlicher Überblick" in text
    [_, confirmed] = _events(app)
    assert confirmed.detail["language"] == "de"
    assert confirmed.consent_version == _version(GERMAN_CONSENT)


@THREE
def test_a_second_request_in_another_language_changes_it_only_when_confirmed(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    _sign_up(client, headers=GERMAN)
    _sign_up(client, query="?lang=ar")
    assert _reader(app).language == "de"  # anybody can type an address
    assert _subject(outbox[1]) == "أكّد اشتراكك في The Daily Ledger"
    arabic = path_of(link_from(outbox[1], "/confirm/"))
    page = _text(client.get(arabic, headers=GERMAN))
    assert _html_tag(page) == '<html lang="ar" dir="rtl">'
    client.post(arabic)  # an older page's button: the request's choices
    assert _reader(app).language == "ar"
    assert _subject(outbox[2]) == "مرحبًا بك في The Daily Ledger"


@THREE
def test_preferences_change_the_language_of_the_pages_and_mails_that_follow(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    uid = add_subscriber(app, "leser@example.de", topics=("politics",))
    _set_language(app, "leser@example.de", "de")
    link = "/preferences/" + make_token(app, Purpose.PREFERENCES, {"s": uid})
    page = _text(client.get(link))
    assert "Ihre Einstellungen" in page

    saved = client.post(link, data={"topics": ["politics"], "frequency": "daily", "language": "ar"})
    assert saved.status_code == 200
    assert _html_tag(_text(saved)) == '<html lang="ar" dir="rtl">'
    assert "تم الحفظ." in _text(saved)
    assert _reader(app).language == "ar"
    [event] = _events(app)
    assert event.detail["language"] == "ar"

    # A signup request for the address, now active, is answered in the reader's language.
    _sign_up(client, headers=GERMAN)
    assert _subject(outbox[-1]) == "أنت مشترك بالفعل في The Daily Ledger"


@with_config(LANGUAGES=["en", "de", "ar"], SEND_IN_READER_TIME=True, DIGEST_HOUR=6)
def test_preferences_ask_language_zone_and_alerts_in_the_readers_language(
    app: Flask, client: FlaskClient
) -> None:
    uid = add_subscriber(app, "leser@example.de", topics=("politics",))
    _set_language(app, "leser@example.de", "de")
    link = "/preferences/" + make_token(app, Purpose.PREFERENCES, {"s": uid})
    page = _text(client.get(link))
    # Both features' fields are on the one form, every word of ours in German.
    assert 'name="language"' in page and 'name="timezone"' in page and 'name="alerts"' in page
    assert "<legend>Zeitzone</legend>" in page
    assert '<label for="timezone">Ihre Zeitzone</label>' in page
    assert '<option value="">Die Zeitzone des Newsletters (UTC)</option>' in page
    assert "Ihre Ausgabe kommt um 06:00 Uhr in dieser Zeitzone." in page
    assert "Eilmeldungen zu meinen Themen, sobald es sie gibt" in page
    assert "<legend>Eilmeldungen</legend>" in page
    assert english_in(page) == []

    wrong = client.post(
        link, data={"topics": ["politics"], "frequency": "daily", "timezone": "Mars/Olympus"}
    )
    assert wrong.status_code == 400
    assert "Wählen Sie eine Zeitzone aus der Liste." in _text(wrong)

    saved = client.post(
        link,
        data={
            "topics": ["politics"],
            "frequency": "daily",
            "language": "ar",
            "timezone": "Africa/Cairo",
            "alerts": "y",
        },
    )
    assert saved.status_code == 200
    assert "تصلك نشرتك في الساعة 06:00 بتوقيت هذه المنطقة الزمنية." in _text(saved)
    reader = _reader(app, "leser@example.de")
    assert (reader.language, reader.timezone, reader.alerts) == ("ar", "Africa/Cairo", True)
    [event] = _events(app)
    assert (event.detail["language"], event.detail["timezone"]) == ("ar", "Africa/Cairo")


@with_config(LANGUAGES=["en", "de"])
def test_preferences_say_the_sites_clock_in_the_readers_language(
    app: Flask, client: FlaskClient
) -> None:
    uid = add_subscriber(app, "leser@example.de")
    _set_language(app, "leser@example.de", "de")
    page = _text(client.get("/preferences/" + make_token(app, Purpose.PREFERENCES, {"s": uid})))
    assert (
        "Die Ausgaben werden für alle Leserinnen und Leser um 07:00 Uhr (Zeitzone UTC) verschickt."
        in page
    )


@with_config(LANGUAGES=["en", "de", "ar"], SEND_IN_READER_TIME=True)
def test_a_german_signup_keeps_the_browsers_zone_and_the_welcome_says_its_hour(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    form = _text(client.get("/subscribe", headers=GERMAN))
    # The zone's hidden field and its script sit beside the language choice.
    assert 'name="timezone" type="hidden"' in form and 'name="language"' in form
    assert '<script defer src="/static/signup.js">' in form
    _sign_up(client, headers=GERMAN, timezone="America/New_York")
    confirm = path_of(link_from(outbox[0], "/confirm/"))
    page = _text(client.get(confirm))
    client.post(confirm, data=form_fields(page))
    reader = _reader(app)
    assert (reader.language, reader.timezone) == ("de", "America/New_York")
    text, html = mail_parts(outbox[1])
    assert "gegen 07:00 Uhr (Zeitzone America/New_York)" in text
    assert "(Zeitzone America/New_York)" in html


@THREE
def test_unsubscribing_speaks_the_readers_language(app: Flask, client: FlaskClient) -> None:
    uid = add_subscriber(app, "leser@example.de")
    _set_language(app, "leser@example.de", "de")
    link = "/unsubscribe/" + make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    assert "Drücken Sie den Knopf" in _text(client.get(link))
    assert "Sie sind abgemeldet" in _text(client.post(link))
    assert "Sie sind bereits abgemeldet" in _text(client.get(link))


@with_config(LANGUAGES=["en", "de"])
def test_a_language_no_longer_offered_is_written_in_the_sites(
    app: Flask, client: FlaskClient
) -> None:
    uid = add_subscriber(app, "reader@example.com")
    _set_language(app, "reader@example.com", "ar")
    link = "/unsubscribe/" + make_token(app, Purpose.UNSUBSCRIBE, {"s": uid})
    assert _html_tag(_text(client.get(link, headers=GERMAN))) == '<html lang="en" dir="ltr">'


# --- other pages ----------------------------------------------------------------------------


@THREE
def test_error_pages_speak_the_browsers_language_and_the_console_stays_english(
    client: FlaskClient,
) -> None:
    missing = client.get("/no-such-page", headers=GERMAN)
    assert missing.status_code == 404
    assert "Seite nicht gefunden" in _text(missing)
    bad_link = client.get("/unsubscribe/forged", headers={"Accept-Language": "ar"})
    assert "هذا الرابط غير صالح" in _text(bad_link)
    console = client.get("/admin/no-such-page", headers=GERMAN)
    assert "Page not found" in _text(console)


@pytest.mark.parametrize("languages", [["en"], ["en", "de", "ar"]])
def test_every_offered_language_names_itself(app: Flask, languages: list[str]) -> None:
    from newsletter import i18n

    with app.app_context():
        assert [i18n.language_name(code) for code in languages] == [
            {"en": "English", "de": "Deutsch", "ar": "العربية"}[code] for code in languages
        ]


@THREE
def test_the_language_is_part_of_a_readers_data(app: Flask, client: FlaskClient) -> None:
    _sign_up(client, headers=GERMAN)
    runner = app.test_cli_runner()
    held = json.loads(runner.invoke(args=["subscribers", "export-data", "leser@example.de"]).output)
    assert held["subscriber"]["language"] == "de"
    [signup] = held["consent_history"]
    assert signup["detail"]["language"] == "de"
    assert signup["consent_wording"] == GERMAN_CONSENT


@with_config(LANGUAGES=["en", "de"], EMBED_ORIGINS=["https://zeitung.example"])
def test_a_box_on_a_publishers_page_names_its_language_in_its_action(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    started = client.get("/subscribe/embed-token").get_json()["started"]
    answer = client.post(
        "/subscribe?lang=de",
        data={"email": "leser@example.de", "consent": "y", "started": started},
        headers={"Origin": "https://zeitung.example"},
    )
    assert answer.status_code == 303
    assert "lang=de" in answer.headers["Location"]
    assert _reader(app).language == "de"
    assert _subject(outbox[0]).startswith("Bestätigen Sie")
    [event] = _events(app)
    assert event.source == "embed:https://zeitung.example"
    assert _wording(app, event.consent_version) == GERMAN_CONSENT
