"""Settings an operator gets wrong are one line naming the setting, for every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from newsletter import config, create_app
from newsletter.errors import ConfigError
from tests.conftest import base_config

ROOT = Path(__file__).resolve().parents[2]


def newsletter(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run the ``newsletter`` command as an operator would, with these NEWSLETTER_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "FLASK_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        NEWSLETTER_SECRET_KEY="a-long-enough-secret-for-this-test-0123456789",
        NEWSLETTER_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/settings.db",
        NEWSLETTER_MAIL_OUTBOX=str(tmp_path / "outbox"),
        NEWSLETTER_JOURNAL_DIR=str(tmp_path / "journal"),
    )
    env.update({f"NEWSLETTER_{key}": value for key, value in settings.items()})
    return subprocess.run(
        [sys.executable, "-c", "from newsletter.cli import main; main()", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_setting_has_a_check() -> None:
    assert set(config.CHECKS) == set(config.DEFAULTS)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        (
            "DIGEST_HOUR",
            "25",
            "NEWSLETTER_DIGEST_HOUR: must be a whole number from 0 to 23, not 25",
        ),
        ("DIGEST_HOUR", "7.5", "NEWSLETTER_DIGEST_HOUR: must be a whole number from 0 to 23"),
        (
            "DIGEST_WEEKDAY",
            "funday",
            "NEWSLETTER_DIGEST_WEEKDAY: must be a day of the week (monday, tuesday, wednesday, "
            "thursday, friday, saturday, sunday, or mon ... sun, or 0-7), not 'funday'",
        ),
        ("TIMEZONE", "Mars/Olympus", "NEWSLETTER_TIMEZONE: 'Mars/Olympus' is not an IANA time"),
        ("SMTP_PORT", "0", "NEWSLETTER_SMTP_PORT: must be a whole number from 1 to 65535, not 0"),
        ("BATCH_SIZE", "-5", "NEWSLETTER_BATCH_SIZE: must be a whole number of at least 1"),
        ("SMTP_TIMEOUT", "soon", "NEWSLETTER_SMTP_TIMEOUT: must be a number greater than 0"),
        ("SEND_RATE", "-1", "NEWSLETTER_SEND_RATE: must be a number at least 0, not -1"),
        ("RATELIMIT_HEADERS_ENABLED", "yes", "NEWSLETTER_RATELIMIT_HEADERS_ENABLED: must be true"),
        ("BASE_URL", "news.example", "NEWSLETTER_BASE_URL: must be a URL (https:// or http://...)"),
        ("BROKER_URL", "localhost", "NEWSLETTER_BROKER_URL: must be a URL"),
        ("EMBED_ORIGINS", "https://a.example/page", "NEWSLETTER_EMBED_ORIGINS: must be an origin"),
        ("RATELIMIT_SIGNUP", "lots", "NEWSLETTER_RATELIMIT_SIGNUP: must be limits like"),
        ("MAIL_FROM", "nobody", "NEWSLETTER_MAIL_FROM: must be one mailbox"),
        ("SMTP_SECURITY", "ssl", "NEWSLETTER_SMTP_SECURITY: must be one of starttls, tls, none"),
        ("TOPICS", "[]", "NEWSLETTER_TOPICS: list at least one topic"),
        ("ACCENT_COLOR", "red", "NEWSLETTER_ACCENT_COLOR: must be a colour written #rrggbb"),
        ("ACCENT_COLOR", "#ffd700", "NEWSLETTER_ACCENT_COLOR: white text on it has a contrast of"),
        ("LOGO_URL", "http://cdn.example/logo.png", "NEWSLETTER_LOGO_URL: must be a URL (https://"),
        ("PRIVACY_URL", "privacy.html", "NEWSLETTER_PRIVACY_URL: must be a URL"),
    ],
)
@pytest.mark.parametrize("command", [["doctor"], ["articles", "list"]])
def test_a_wrong_setting_is_one_line_naming_it(
    tmp_path: Path, command: list[str], setting: str, value: str, message: str
) -> None:
    result = newsletter(tmp_path, *command, **{setting: value})
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"Error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""


def test_several_wrong_settings_are_named_together(tmp_path: Path) -> None:
    result = newsletter(tmp_path, "doctor", DIGEST_HOUR="25", DIGEST_WEEKDAY="funday")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: 2 settings are wrong:"
    assert lines[1].startswith("  NEWSLETTER_DIGEST_HOUR: must be a whole number from 0 to 23")
    assert lines[2].startswith("  NEWSLETTER_DIGEST_WEEKDAY: must be a day of the week")
    assert len(lines) == 3


def test_a_secret_is_never_repeated_in_the_message(tmp_path: Path) -> None:
    result = newsletter(tmp_path, "doctor", SECRET_KEY_FALLBACKS='["old-secret-value", ""]')
    assert result.returncode == 1
    assert "NEWSLETTER_SECRET_KEY_FALLBACKS: must be a list of non-empty texts" in result.stderr
    assert "old-secret-value" not in result.stderr


def test_text_settings_are_read_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "123456")  # JSON would make it a number
    monkeypatch.setenv("NEWSLETTER_SITE_NAME", "null")  # and this None
    app = create_app(base_config("sqlite://", tmp_path))
    assert app.config["SMTP_PASSWORD"] == "123456"
    assert app.config["SITE_NAME"] == "null"


def test_a_good_configuration_names_no_setting(tmp_path: Path) -> None:
    result = newsletter(tmp_path, "doctor", DIGEST_HOUR="23", DIGEST_WEEKDAY="Sunday")
    assert "Traceback" not in result.stderr
    assert "Error:" not in result.stderr
    assert f"ok       settings: all {len(config.CHECKS)} are valid" in result.stdout


def test_doctor_names_what_is_only_read_when_used(tmp_path: Path) -> None:
    settings: dict[str, Any] = {
        **base_config(f"sqlite:///{tmp_path}/doctor.db", tmp_path),
        "SMTP_CA_FILE": str(tmp_path / "no-such-ca.pem"),
        "VERP_LOCAL": "bounces+x",
    }
    app = create_app(settings)
    app.config["DIGEST_HOUR"] = 24  # changed after start-up: doctor checks again
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 1
    for expected in (
        "ERROR    settings: NEWSLETTER_DIGEST_HOUR: must be a whole number from 0 to 23, not 24",
        f"ERROR    settings: NEWSLETTER_SMTP_CA_FILE: {tmp_path}/no-such-ca.pem is not a file",
        "ERROR    settings: NEWSLETTER_VERP_LOCAL: must be a plain ASCII local part",
    ):
        assert expected in result.output, result.output


def test_the_app_refuses_a_wrong_setting_from_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NEWSLETTER_MAX_ATTEMPTS: must be a whole number"):
        create_app({**base_config("sqlite://", tmp_path), "MAX_ATTEMPTS": True})


@pytest.mark.parametrize(
    ("given", "day"),
    [
        ("monday", "monday"),
        (" Thu ", "thursday"),
        ("sun", "sunday"),
        ("0", "sunday"),
        ("7", "sunday"),
        ("1", "monday"),
    ],
)
def test_the_weekly_day_may_be_written_as_cron_writes_it_and_is_kept_as_its_name(
    tmp_path: Path, given: str, day: str
) -> None:
    app = create_app({**base_config("sqlite://", tmp_path), "DIGEST_WEEKDAY": given})
    assert app.config["DIGEST_WEEKDAY"] == day


def test_an_empty_optional_url_means_unset(tmp_path: Path) -> None:
    app = create_app(
        {**base_config("sqlite://", tmp_path), "BROKER_URL": "", "LOGO_URL": "", "SITE_URL": ""}
    )
    assert app.config["LOGO_URL"] == ""


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("BROKER_URL", "redis:/:hunter2@localhost:6379/0"),
        ("SQLALCHEMY_DATABASE_URI", "postgresql://app:hunter2@db:notaport/news"),
        ("BROKER_URL", "redis://:hunter2@[::1:6379/0"),
    ],
)
def test_a_wrong_url_is_named_without_its_password_and_without_a_traceback(
    tmp_path: Path, setting: str, value: str
) -> None:
    result = newsletter(tmp_path, "doctor", **{setting: value})
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"Error: NEWSLETTER_{setting}: must be"), result.stderr
    assert "hunter2" not in result.stderr
