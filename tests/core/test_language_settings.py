"""LANGUAGES and CONSENT_TEXT by language: checked at start-up like every setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter import create_app
from newsletter.errors import ConfigError
from tests.conftest import base_config
from tests.core.test_settings import newsletter


def test_languages_are_read_from_the_environment_as_a_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_LANGUAGES", "de, en")
    monkeypatch.setenv(
        "NEWSLETTER_CONSENT_TEXT", '{"de": "Wir schreiben Ihnen.", "en": "We write."}'
    )
    app = create_app(base_config("sqlite://", tmp_path))
    assert app.config["LANGUAGES"] == ["de", "en"]
    assert app.config["CONSENT_TEXT"] == {"de": "Wir schreiben Ihnen.", "en": "We write."}
    assert app.config["BABEL_DEFAULT_LOCALE"] == "de"


def test_a_consent_text_that_only_looks_like_an_object_stays_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_CONSENT_TEXT", "{Brackets} are part of our wording.")
    app = create_app(base_config("sqlite://", tmp_path))
    assert app.config["CONSENT_TEXT"] == "{Brackets} are part of our wording."


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"LANGUAGES": ["en", "fr"]},
            "NEWSLETTER_LANGUAGES: 'fr' has no catalog in this package (it ships ar, de, en)",
        ),
        ({"LANGUAGES": []}, "NEWSLETTER_LANGUAGES: list at least one language"),
        ({"LANGUAGES": ["de", "de"]}, "NEWSLETTER_LANGUAGES: lists a language twice"),
        (
            {"LANGUAGES": ["en", "de"], "CONSENT_TEXT": {"en": "We write."}},
            "NEWSLETTER_CONSENT_TEXT: has no text for de",
        ),
        (
            {"CONSENT_TEXT": {"en": "We write.", "ar": "نكتب"}},
            "NEWSLETTER_CONSENT_TEXT: has a text for ar, which LANGUAGES does not offer",
        ),
        ({"CONSENT_TEXT": {"en": " "}}, "NEWSLETTER_CONSENT_TEXT: must give each language a"),
        ({"CONSENT_TEXT": ""}, "NEWSLETTER_CONSENT_TEXT: must be a non-empty text"),
    ],
)
def test_a_wrong_language_setting_is_refused(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_app({**base_config("sqlite://", tmp_path), **settings})


def test_a_wrong_language_is_one_line_naming_it(tmp_path: Path) -> None:
    result = newsletter(tmp_path, "doctor", LANGUAGES="en,klingon")
    assert result.returncode == 1
    assert result.stderr == (
        "Error: NEWSLETTER_LANGUAGES: 'klingon' has no catalog in this package "
        "(it ships ar, de, en)\n"
    )
