"""Topic slugs in every alphabet: never empty, never shared, stable for Latin names."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter import create_app
from newsletter.articles.cleaning import make_record
from newsletter.db.models import Subscriber
from newsletter.errors import ConfigError, InvalidArticle
from newsletter.extensions import db
from newsletter.readers.topics import slugify
from tests.conftest import base_config, signup, with_config

RUSSIAN = ["Политика", "Культура", "Экономика"]


def test_latin_names_keep_the_slugs_they_always_had() -> None:
    assert slugify("Breaking News") == "breaking-news"
    assert slugify("Économie & Société") == "economie-societe"
    assert slugify("  Analytics / Data ") == "analytics-data"


def test_names_in_other_scripts_keep_their_letters() -> None:
    slugs = [slugify(name) for name in ["Культура", "政治", "Ελλάδα", "ガス", "カス"]]
    assert slugs == ["культура", "政治", "ελλάδα", "ガス", "カス"]
    # Vowel signs are marks, part of the word: not cut out of it.
    assert slugify("समाचार") == "समाचार" and slugify("ข่าว") == "ข่าว"


def test_a_name_that_had_a_slug_keeps_it() -> None:
    # Before, only ASCII letters and digits counted; whatever they gave stays as it was.
    assert slugify("Europe & Ελλάδα") == "europe"
    assert slugify("Hawai\u02bbi News") == "hawaii-news"
    assert slugify("Economía Nº 1") == "economia-no-1"


def test_a_name_without_letters_still_gets_a_slug_of_its_own_but_is_no_topic(
    tmp_path: Path,
) -> None:
    assert slugify("★").startswith("topic-") and slugify("☆").startswith("topic-")
    assert slugify("★") != slugify("☆")
    # No article could ever be filed under it, so it cannot be a topic.
    with pytest.raises(ConfigError, match="no letter or digit"):
        create_app({**base_config("sqlite://", tmp_path), "TOPICS": ["Politics", "★"]})
    with pytest.raises(ConfigError, match="too long"):
        create_app({**base_config("sqlite://", tmp_path), "TOPICS": ["x" * 80]})


def test_two_topics_sharing_a_slug_are_refused_at_start_naming_both(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        create_app({**base_config("sqlite://", tmp_path), "TOPICS": ["Politics", "POLITICS!"]})
    assert refused.value.setting == "NEWSLETTER_TOPICS"
    assert "'Politics'" in str(refused.value) and "'POLITICS!'" in str(refused.value)


@with_config(TOPICS=RUSSIAN)
def test_a_russian_sites_readers_keep_their_choice_of_topic(
    app: Flask, client: FlaskClient
) -> None:
    page = client.get("/subscribe").get_data(as_text=True)
    assert all(f'value="{slugify(name)}"' in page for name in RUSSIAN)
    assert signup(client, "reader@example.com", topics=["культура"]).status_code == 200
    with app.app_context():
        subscriber = db.session.scalar(select(Subscriber))
        assert subscriber is not None and subscriber.topics == ["культура"]


def test_an_article_in_a_cyrillic_section_is_filed_under_it() -> None:
    record = make_record(url="https://ledger.example/1", title="Театр", category="Культура")
    assert record.topic == "культура"
    with pytest.raises(InvalidArticle, match="no letters"):
        make_record(url="https://ledger.example/2", title="x", category="★ ★")
