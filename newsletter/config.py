"""Settings: defaults, then NEWSLETTER_* environment variables, then a test mapping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask

from newsletter.errors import ConfigError

DEFAULT_SECRET_KEY = "dev-only-change-me"

DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": DEFAULT_SECRET_KEY,
    "SECRET_KEY_FALLBACKS": [],
    "SQLALCHEMY_DATABASE_URI": None,  # filled in with an SQLite file under instance/
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    "BROKER_URL": None,
    "BASE_URL": "http://127.0.0.1:5000",
    "SITE_NAME": "The Daily Ledger",
    "MAIL_FROM": "The Daily Ledger <newsletter@example.com>",
    "POSTAL_ADDRESS": "The Daily Ledger, 1 Example Street, Springfield 00000",
    "LIST_ID": None,  # derived from MAIL_FROM's domain when unset
    "FEEDBACK_ID": None,
    "MAIL_BACKEND": "file",
    "MAIL_OUTBOX": None,  # instance/outbox when unset
    "SMTP_HOST": "127.0.0.1",
    "SMTP_PORT": 587,
    "SMTP_USERNAME": None,
    "SMTP_PASSWORD": None,
    "SMTP_SECURITY": "starttls",
    "SMTP_TIMEOUT": 30.0,
    "SMTP_CA_FILE": None,
    "SMTP_LOCAL_HOSTNAME": None,
    "DKIM_SELECTOR": None,
    "DKIM_DOMAIN": None,
    "DKIM_PRIVATE_KEY_FILE": None,
    "FEEDS": [],  # RSS/Atom URLs (or local paths) that `articles fetch` and the beat task read
    "FEED_TIMEOUT": 20.0,  # seconds; a feed that takes longer is reported and skipped
    "TOPICS": ["Breaking News", "Politics", "Business", "Analytics", "Technology", "Culture"],
    "TIMEZONE": "UTC",
    "DIGEST_HOUR": 7,
    "DIGEST_WEEKDAY": "monday",
    "DIGEST_MAX_ARTICLES": 20,
    "BATCH_SIZE": 500,
    "JOURNAL_EVERY": 100,
    "JOURNAL_DIR": None,  # instance/journal when unset; each machine's own disk
    "MAX_ATTEMPTS": 5,
    "RETRY_BASE_SECONDS": 60.0,
    "LEASE_SECONDS": 300.0,
    "RECOVER_EVERY_SECONDS": 60.0,  # how often beat runs recovery
    "SEND_RATE": 0,
    "CONFIRM_MAX_AGE_DAYS": 7,
    "CONFIRM_MAILS_PER_DAY": 3,
    "SIGNUP_MIN_SECONDS": 2.0,
    "SIGNUP_FORM_MAX_AGE_HOURS": 12,
    "WELCOME_MAIL": True,  # a mail after confirming: what comes, when, how to change or leave
    "EMBED_ORIGINS": [],
    "CONSENT_TEXT": (
        "Your information is secure. By opting in you agree to receive emails from us "
        "and you can opt out at any time."
    ),
    "PROXY_FIX_X_FOR": 0,
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_SIGNUP": "10 per minute; 100 per hour",
    "RATELIMIT_RESEND": "5 per hour",
    "RATELIMIT_HEADERS_ENABLED": True,
    "WTF_CSRF_TIME_LIMIT": None,  # the session carries the token; the form-age check is separate
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    # Bounces and complaints (newsletter bounces process, POST /webhooks/bounces)
    "VERP_DOMAIN": None,  # the domain of MAIL_FROM when unset
    "VERP_LOCAL": "bounces",  # return path: bounces+<delivery id>-<hmac>@VERP_DOMAIN
    "SOFT_BOUNCE_LIMIT": 3,  # soft bounces (mailbox full...) within the window that suppress
    "SOFT_BOUNCE_WINDOW_DAYS": 30,
    "BOUNCE_WEBHOOK_TOKEN": None,  # unset: the webhook answers 404
    "BOUNCE_MAX_BYTES": 2 * 1024 * 1024,  # per message, webhook body and CLI input alike
}

LIST_SETTINGS = ("SECRET_KEY_FALLBACKS", "TOPICS", "EMBED_ORIGINS", "FEEDS")


def _as_list(value: Any) -> list[str]:
    """Accept a JSON list from the environment or a plain comma-separated string."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return [str(part) for part in value]
    return [str(value)]


def load(app: Flask, test_config: Mapping[str, Any] | None) -> None:
    """Layer defaults, environment and test mapping into ``app.config`` and check them."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("NEWSLETTER")
    if test_config:
        app.config.from_mapping(test_config)
    for key in LIST_SETTINGS:
        app.config[key] = _as_list(app.config[key])
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{app.instance_path}/newsletter.db"
    if not app.config["JOURNAL_DIR"]:
        app.config["JOURNAL_DIR"] = f"{app.instance_path}/journal"
    if not app.config["MAIL_OUTBOX"]:
        app.config["MAIL_OUTBOX"] = f"{app.instance_path}/outbox"
    app.config["BASE_URL"] = str(app.config["BASE_URL"]).rstrip("/")
    # Behind https the session cookie (it carries the CSRF token) must never go out in clear.
    app.config.setdefault("SESSION_COOKIE_SECURE", app.config["BASE_URL"].startswith("https://"))
    check(app)


def check(app: Flask) -> None:
    """Refuse settings that would be unsafe outside debug and testing."""
    relaxed = app.debug or app.testing
    if app.config["SECRET_KEY"] in (None, "", DEFAULT_SECRET_KEY) and not relaxed:
        raise ConfigError(
            "NEWSLETTER_SECRET_KEY",
            "the default secret key is only for debug and tests; set a long random value "
            '(python -c "import secrets; print(secrets.token_urlsafe(48))")',
        )
    if app.config["SMTP_SECURITY"] not in ("starttls", "tls", "none"):
        raise ConfigError("NEWSLETTER_SMTP_SECURITY", "must be starttls, tls or none")
    if app.config["SMTP_USERNAME"] and app.config["SMTP_SECURITY"] == "none":
        raise ConfigError(
            "NEWSLETTER_SMTP_SECURITY",
            "a username is set but the connection is not encrypted; "
            "AUTH is only sent over TLS (use starttls or tls)",
        )
    if not app.config["TOPICS"]:
        raise ConfigError("NEWSLETTER_TOPICS", "list at least one topic")
    from newsletter.readers import topics

    topics.check(app.config["TOPICS"])
    try:
        ZoneInfo(str(app.config["TIMEZONE"]))
    except (ValueError, OSError, ZoneInfoNotFoundError) as exc:  # OSError: a folder name
        raise ConfigError(
            "NEWSLETTER_TIMEZONE",
            f"{app.config['TIMEZONE']!r} is not an IANA time zone (e.g. Europe/Berlin)",
        ) from exc
    from newsletter.mail.backends import backend_class

    backend_class(str(app.config["MAIL_BACKEND"]))  # an unknown name fails at start, not mid-send
