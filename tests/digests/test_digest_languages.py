"""A digest in each reader's language: rendered once per set of topics and language, every
word of ours translated, the articles as the publisher wrote them."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from babel.dates import format_date
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select, update

from newsletter.clock import site_zone
from newsletter.db.models import Article, Subscriber
from newsletter.extensions import db
from newsletter.mail import render
from newsletter.mail.message import OutgoingMessage
from tests.conftest import with_config
from tests.support.catalog import english_in
from tests.support.digest_helpers import add_article, add_reader, html_part, parse, text_part

THREE = with_config(LANGUAGES=["en", "de", "ar"])


def _readers(app: Flask, *readers: tuple[str, str, tuple[str, ...], str | None]) -> None:
    for email, name, topics, language in readers:
        add_reader(app, email, topics, name=name)
        with app.app_context():
            db.session.execute(
                update(Subscriber).where(Subscriber.email == email).values(language=language)
            )
            db.session.commit()


def _send(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["digest", "send", "--frequency", "daily"])
    assert result.exit_code == 0, result.output


def _mails(outbox: list[OutgoingMessage]) -> dict[str, Any]:
    return {message.recipient: parse(message.data) for message in outbox}


def _published(app: Flask, title: str) -> datetime:
    with app.app_context():
        found = db.session.scalar(select(Article.published_at).where(Article.title == title))
        assert found is not None
        return found


@THREE
def test_each_reader_gets_the_digest_in_their_language_rendered_once_per_variant(
    app: Flask,
    runner: FlaskCliRunner,
    outbox: list[OutgoingMessage],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_article(app, "Haushalt beschlossen", "Politics")
    add_article(app, "Börse schließt höher", "Business")
    _readers(
        app,
        ("pat@example.com", "Pat", ("politics",), None),
        ("lea@example.de", "Lea", ("politics",), "de"),
        ("max@example.de", "", ("politics",), "de"),
        ("tom@example.de", "Tom", ("politics", "business"), "de"),
        ("sara@example.org", "سارة", ("politics",), "ar"),
    )
    rendered: Counter[tuple[str, str]] = Counter()
    original = render.render

    def counting(name: str, language: str, **context: Any) -> render.Rendered:
        rendered[(language, ",".join(s.name for s in context["sections"]))] += 1
        return original(name, language, **context)

    monkeypatch.setattr(render, "render", counting)
    _send(runner)

    # Five readers, four (topics, language) pairs: four renderings, each once.
    assert rendered == Counter(
        {
            ("en", "Politics"): 1,
            ("de", "Politics"): 1,
            ("de", "Politics,Business"): 1,
            ("ar", "Politics"): 1,
        }
    )
    mails = _mails(outbox)
    assert (
        mails["pat@example.com"]["Subject"]
        == "Haushalt beschlossen | The Daily Ledger daily digest"
    )
    assert (
        mails["lea@example.de"]["Subject"]
        == "Haushalt beschlossen | Täglicher Überblick von The Daily Ledger"
    )
    assert mails["tom@example.de"]["Subject"] == (
        "Haushalt beschlossen und 1 weiterer Artikel | Täglicher Überblick von The Daily Ledger"
    )
    assert (
        mails["sara@example.org"]["Subject"]
        == "Haushalt beschlossen | نشرة The Daily Ledger اليومية"
    )

    lea = text_part(mails["lea@example.de"])
    assert lea.startswith("The Daily Ledger\n\nHallo Lea,\n\nHier ist Ihr täglicher Überblick")
    assert "Hallo,\n" in text_part(mails["max@example.de"])
    with app.app_context():
        day = _published(app, "Haushalt beschlossen").astimezone(site_zone()).date()
    assert format_date(day, "long", locale="de") in lea  # "4. Dezember 2026"
    assert "Haushalt beschlossen" in lea  # the article as the publisher wrote it
    assert "Hallo Pat" not in text_part(mails["pat@example.com"])
    assert text_part(mails["pat@example.com"]).startswith("The Daily Ledger\n\nHello Pat,")
    assert text_part(mails["sara@example.org"]).startswith("The Daily Ledger\n\nمرحبًا سارة،")  # noqa: RUF001
    for email in ("lea@example.de", "tom@example.de"):
        message = mails[email]
        assert english_in(text_part(message)) == []
        assert english_in(html_part(message)) == []
    assert english_in(text_part(mails["sara@example.org"])) == []
    # (The check sees English where there is some.)
    assert "Here is your daily digest of the latest news and articles" in english_in(
        text_part(mails["pat@example.com"])
    )


@THREE
def test_the_arabic_digest_is_written_right_to_left(
    app: Flask, runner: FlaskCliRunner, outbox: list[OutgoingMessage]
) -> None:
    add_article(app, "Rates held", summary="<ul><li>One</li></ul><blockquote>Said</blockquote>")
    _readers(app, ("sara@example.org", "سارة", ("analytics",), "ar"))
    _send(runner)
    html = html_part(_mails(outbox)["sara@example.org"])
    assert '<html lang="ar" dir="rtl"' in html
    assert re.search(r'<table class="wrap"[^>]* dir="rtl"', html)
    assert re.search(r'<td class="cell" dir="rtl" style="direction: rtl;text-align: right;', html)
    # The sides mail clients keep as properties are swapped: lists indent from the right.
    assert "padding-right: 24px" in html and "padding-left: 24px" not in html
    assert "border-right: 3px solid" in html


@THREE
def test_read_it_in_your_browser_opens_the_archive_in_the_readers_language(
    app: Flask, runner: FlaskCliRunner, outbox: list[OutgoingMessage], client: FlaskClient
) -> None:
    add_article(app, "Haushalt beschlossen", "Politics")
    _readers(app, ("lea@example.de", "Lea", ("politics",), "de"))
    _send(runner)
    text = text_part(_mails(outbox)["lea@example.de"])
    link = next(word for word in text.split() if "/archive/" in word)
    assert link.endswith("?lang=de")
    parts = urlsplit(link)
    page = client.get(f"{parts.path}?{parts.query}").get_data(as_text=True)
    assert '<html lang="de" dir="ltr">' in page
    assert "Täglicher Überblick" in page and "Alle früheren Ausgaben" in page
    index = client.get("/archive", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert "Frühere Ausgaben" in index and "Täglich" in index


@with_config(LANGUAGES=["en", "de"])
def test_a_preview_can_be_read_in_any_offered_language(app: Flask, runner: FlaskCliRunner) -> None:
    add_article(app, "Rates held")
    german = runner.invoke(args=["digest", "preview", "--language", "de"])
    assert german.exit_code == 0, german.output
    assert "Täglicher Überblick von The Daily Ledger" in german.output
    assert "Dies ist eine Vorschau" in german.output
    wrong = runner.invoke(args=["digest", "preview", "--language", "fr"])
    assert wrong.exit_code == 2
    assert "'fr' is not one of LANGUAGES (en, de)" in wrong.output


@THREE
def test_an_alert_reaches_each_reader_in_their_language(
    app: Flask, outbox: list[OutgoingMessage]
) -> None:
    from newsletter.articles import store
    from newsletter.digests import sending

    url = add_article(app, "Deich bricht oberhalb der Stadt", "Politics", author="Jana Becker")
    _readers(
        app,
        ("pat@example.com", "Pat", ("breaking-news",), None),
        ("lea@example.de", "Lea", ("breaking-news",), "de"),
        ("sara@example.org", "سارة", ("breaking-news",), "ar"),
    )
    with app.app_context():
        sending.start_alert(store.recent_articles(1)[0].id, "breaking-news")
    mails = _mails(outbox)
    assert len(mails) == 3
    assert mails["pat@example.com"]["Subject"] == (
        "Breaking: Deich bricht oberhalb der Stadt | The Daily Ledger"
    )

    lea = mails["lea@example.de"]
    assert lea["Subject"] == "Eilmeldung: Deich bricht oberhalb der Stadt | The Daily Ledger"
    text, html = text_part(lea), html_part(lea)
    assert "Hallo Lea," in text
    assert "EILMELDUNG - POLITICS" in text  # the topic as the publisher named it
    assert "Deich bricht oberhalb der Stadt" in text and url in text
    assert "Eilmeldungen ausschalten oder Themen ändern: " in text
    assert '<html lang="de" dir="ltr" ' in html
    assert re.search(r"<h2[^>]*>Eilmeldung (&middot;|·) Politics</h2>", html)
    assert ">Artikel lesen</a>" in html
    assert english_in(text) == [] and english_in(html) == []

    sara = mails["sara@example.org"]
    assert sara["Subject"] == "عاجل: Deich bricht oberhalb der Stadt | The Daily Ledger"
    assert 'dir="rtl"' in html_part(sara)
    assert "أوقف التنبيهات أو غيّر موضوعاتك" in text_part(sara)
    assert english_in(text_part(sara)) == [] and english_in(html_part(sara)) == []
