"""The publisher's look without editing code: logo, accent, links home and to the privacy policy,
and templates of their own."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from newsletter import create_app
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from tests.conftest import (
    _fresh_schema,
    base_config,
    link_from,
    mail_parts,
    path_of,
    signup,
    with_config,
)

BRAND: dict[str, Any] = {
    "LOGO_URL": "https://cdn.ledger.example/logo.png",
    "ACCENT_COLOR": "#00529b",
    "SITE_URL": "https://www.ledger.example",
    "PRIVACY_URL": "https://www.ledger.example/privacy",
}


@with_config(**BRAND)
def test_every_page_carries_the_logo_the_accent_and_the_links_home_and_to_the_privacy_policy(
    client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    signup(client, "pat@example.org")
    pages = [client.get("/subscribe"), client.get(path_of(link_from(outbox[0], "/confirm/")))]
    for page in pages:
        html = page.get_data(as_text=True)
        assert '<img src="https://cdn.ledger.example/logo.png"' in html
        assert "--accent: #00529b;" in html
        assert '<a href="https://www.ledger.example/privacy">Privacy policy</a>' in html
        assert re.search(r'<header><a href="https://www.ledger.example">', html)
        assert "#b3261e" not in html


@with_config(**BRAND)
def test_every_mail_carries_them_in_its_html_and_text(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    signup(client, "pat@example.org")
    client.post(path_of(link_from(outbox[0], "/confirm/")))
    assert len(outbox) == 2  # the confirmation and the welcome
    for message in outbox:
        text, html = mail_parts(message)
        assert 'src="https://cdn.ledger.example/logo.png"' in html
        assert 'href="https://www.ledger.example/privacy"' in html
        assert "Privacy policy: https://www.ledger.example/privacy" in text
        assert "The Daily Ledger: https://www.ledger.example" in text
        assert "#b3261e" not in html.lower()
    _, confirm_html = mail_parts(outbox[0])
    assert re.search(r'class="button"[^>]*background-color: #00529b', confirm_html) or re.search(
        r'background-color: #00529b[^>]*class="button"', confirm_html
    )


def test_without_branding_there_are_no_empty_links(
    client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    html = client.get("/subscribe").get_data(as_text=True)
    assert "Privacy policy" not in html and "<img" not in html
    signup(client, "pat@example.org")
    text, mail_html = mail_parts(outbox[0])
    assert "Privacy policy" not in text and "Privacy policy" not in mail_html


@pytest.fixture
def overrides(tmp_path: Path) -> Path:
    folder = tmp_path / "my-templates"
    (folder / "email" / "confirm").mkdir(parents=True)
    (folder / "email" / "confirm" / "subject.txt").write_text(
        "One click left, {{ config.SITE_NAME }}"
    )
    return folder


def test_a_publishers_own_template_wins_over_the_shipped_one(
    database_url: str, tmp_path: Path, overrides: Path, outbox: list[OutgoingMessage]
) -> None:
    app = create_app({**base_config(database_url, tmp_path), "TEMPLATE_OVERRIDES": str(overrides)})
    _fresh_schema(app)
    outbox.clear()  # this app is not the fixture's, which empties it
    signup(app.test_client(), "pat@example.org")
    parsed = message_from_bytes(outbox[0].data, policy=policy.default)
    assert parsed["Subject"] == "One click left, The Daily Ledger"
    # The other templates are still the shipped ones.
    assert b"/confirm/" in outbox[0].data
    with app.app_context():
        db.engine.dispose()


def test_by_default_the_instance_folder_holds_the_overrides(app: Flask) -> None:
    assert app.config["TEMPLATE_OVERRIDES"] == f"{app.instance_path}/templates"
