"""Articles pushed through the API: cleaned as a feed's, every bad field named, all or nothing."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from newsletter.db.models import Article, AuditEvent
from newsletter.extensions import db
from tests.support.api import assert_problem, bad_fields, call

PATH = "/api/v1/articles"


def _push(client: FlaskClient, secret: str, *articles: dict[str, Any]) -> Any:
    return call(client, "POST", PATH, secret, json={"articles": list(articles)})


def _article(**fields: Any) -> dict[str, Any]:
    return {
        "url": "https://ledger.example/politics/vote",
        "title": "The vote",
        "category": "Politics",
        **fields,
    }


def _stored(app: Flask) -> list[Article]:
    with app.app_context():
        rows = list(db.session.scalars(select(Article).order_by(Article.id)))
        db.session.expunge_all()
        return rows


def test_pushed_articles_are_stored_cleaned_as_a_feeds(
    app: Flask, client: FlaskClient, tokens: dict[str, str]
) -> None:
    response = _push(
        client,
        tokens["send"],
        _article(
            title="The <b>vote</b>\r\nBcc: someone",
            summary='<p onclick="steal()">Counted <script>alert(1)</script>'
            '<a href="javascript:x()">here</a><a href="https://ledger.example/more">more</a></p>'
            '<iframe src="https://evil.example"></iframe>',
            author="Ann Reporter",
            image_url="https://cdn.ledger.example/vote.jpg",
            image_width=1200,
            image_height=800,
            published="2026-01-05T08:00:00+01:00",
        ),
        _article(url="https://ledger.example/culture/film", title="A film", category="Film"),
    )
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert (answer["added"], answer["known"]) == (2, 0)
    stored = _stored(app)
    assert [a["id"] for a in answer["articles"]] == [a.id for a in stored]
    vote, film = stored
    assert vote.title == "The <b>vote</b> Bcc: someone"  # one line; escaped where shown
    assert "script" not in vote.summary and "onclick" not in vote.summary
    assert "javascript:" not in vote.summary and "iframe" not in vote.summary
    assert (
        '<a href="https://ledger.example/more" rel="noopener noreferrer">more</a>' in vote.summary
    )
    assert (vote.author, vote.image_width, vote.topic) == ("Ann Reporter", 1200, "politics")
    assert vote.published_at.isoformat() == "2026-01-05T07:00:00+00:00"
    # Stored, as from a feed, though no reader can choose its section yet.
    assert answer["articles"][1] == {
        "id": film.id,
        "guid": "https://ledger.example/culture/film",
        "added": True,
        "topic": "film",
        "topic_configured": False,
    }
    with app.app_context():
        event = db.session.scalars(select(AuditEvent)).one()
        assert (event.action, event.detail) == ("articles.push", {"added": 2})


def test_a_known_article_is_left_as_it_is_and_answered_with_its_id(
    app: Flask, client: FlaskClient, tokens: dict[str, str]
) -> None:
    first = _push(client, tokens["send"], _article(guid="cms-1")).get_json()
    again = _push(
        client, tokens["send"], _article(guid="cms-1", title="Changed"), _article(guid="cms-2")
    )
    answer = again.get_json()
    assert (answer["added"], answer["known"]) == (1, 1)
    assert answer["articles"][0] == {**first["articles"][0], "added": False}
    assert [a.title for a in _stored(app)] == ["The vote", "The vote"]


@pytest.mark.parametrize(
    ("article", "pointer", "words"),
    [
        (_article(url="javascript:alert(1)"), "#/articles/1/url", "is not an absolute http(s) URL"),
        (_article(url="ftp://ledger.example/x"), "#/articles/1/url", "http(s)"),
        (
            _article(url="https://ledger.example/" + "a" * 2000),
            "#/articles/1/url",
            "longer than 2000",
        ),
        (_article(image_url="http://cdn.example/a.jpg"), "#/articles/1/image_url", "https"),
        (
            _article(image_url="https://cdn.example/a.jpg", image_width=0),
            "#/articles/1/image_width",
            "pixels",
        ),
        (_article(image_width=100), "#/articles/1/image_width", "given without image_url"),
        (
            _article(image_url="https://cdn.example/a.jpg", image_height=True),
            "#/articles/1/image_height",
            "whole number",
        ),
        (_article(title=""), "#/articles/1/title", "missing"),
        (_article(category="!!!"), "#/articles/1/category", "has no letters"),
        (_article(published="yesterday"), "#/articles/1/published", "ISO 8601"),
        (_article(published="0001-01-01T00:00:00+14:00"), "#/articles/1/published", "out of range"),
        (_article(summary=["<p>"]), "#/articles/1/summary", "must be a string"),
        (_article(body="<p>all of it</p>"), "#/articles/1/body", "unknown field"),
        ("https://ledger.example/x", "#/articles/1", "must be an article object"),
        (_article(guid="cms-0"), "#/articles/1", "repeats the guid of #/articles/0"),
    ],
)
def test_a_bad_article_is_refused_naming_its_field_and_nothing_is_stored(
    app: Flask, client: FlaskClient, tokens: dict[str, str], article: Any, pointer: str, words: str
) -> None:
    good = _article(url="https://ledger.example/fine", guid="cms-0")
    errors = bad_fields(_push(client, tokens["send"], good, article))
    assert list(errors) == [pointer]
    assert words in errors[pointer]
    assert _stored(app) == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"articles": []},
        {"articles": {"url": "x"}},
        {"articles": [_article()] * 101},
        {"article": []},
    ],
    ids=["empty", "none", "object", "too-many", "misspelt"],
)
def test_the_envelope_is_checked(client: FlaskClient, tokens: dict[str, str], body: Any) -> None:
    errors = bad_fields(call(client, "POST", PATH, tokens["send"], json=body))
    assert "#/articles" in errors


def test_a_body_over_the_limit_is_refused_with_413(
    app: Flask, client: FlaskClient, tokens: dict[str, str]
) -> None:
    app.config["API_MAX_BYTES"] = 1000
    response = _push(client, tokens["send"], _article(summary="x" * 2000))
    assert_problem(response, 413)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Article)) == 0
