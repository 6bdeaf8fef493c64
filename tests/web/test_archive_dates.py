"""Dates a reader sees are the site's: an edition made late in the UTC evening is dated the
next day on a site east of UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from flask.testing import FlaskClient

from newsletter.db.models import Edition
from newsletter.extensions import db
from tests.conftest import with_config

LATE = datetime(2026, 12, 3, 23, 30, tzinfo=UTC)


def edition_made_at(app: Flask, moment: datetime) -> int:
    with app.app_context():
        edition = Edition(frequency="daily", subject="The news", covers_until=moment)
        edition.created_at = moment
        db.session.add(edition)
        db.session.commit()
        return edition.id


@with_config(TIMEZONE="Asia/Tokyo")
def test_the_archive_dates_an_edition_by_the_sites_clock(app: Flask, client: FlaskClient) -> None:
    edition_id = edition_made_at(app, LATE)
    for path in ("/archive", f"/archive/{edition_id}"):
        page = client.get(path).get_data(as_text=True)
        assert "04 December 2026" in page and "03 December 2026" not in page, path


@with_config(TIMEZONE="America/New_York")
def test_a_site_west_of_utc_sees_the_same_day(app: Flask, client: FlaskClient) -> None:
    edition_id = edition_made_at(app, LATE)
    page = client.get(f"/archive/{edition_id}").get_data(as_text=True)
    assert "03 December 2026" in page


def test_an_edition_id_past_any_edition_is_a_404_not_a_server_error(client: FlaskClient) -> None:
    for edition_id in ("2147483648", "9223372036854775808", "1" + "0" * 40):
        response = client.get(f"/archive/{edition_id}")
        assert response.status_code == 404, edition_id
        assert "There is no page at this address." in response.get_data(as_text=True)
