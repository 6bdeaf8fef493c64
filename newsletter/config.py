"""Settings: defaults, then NEWSLETTER_* environment variables, then a test mapping."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask

from newsletter.errors import ConfigError, ConfigErrors
from newsletter.i18n import N_

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
    "SMTP_CONNECTIONS": 1,  # per digest batch, sending at once
    "DKIM_SELECTOR": None,
    "DKIM_DOMAIN": None,
    "DKIM_PRIVATE_KEY_FILE": None,
    "FEEDS": [],  # RSS/Atom URLs (or local paths) that `articles fetch` and the beat task read
    "FEED_TIMEOUT": 20.0,  # seconds; a feed that takes longer is reported and skipped
    "TOPICS": ["Breaking News", "Politics", "Business", "Analytics", "Technology", "Culture"],
    "TIMEZONE": "UTC",
    "DIGEST_HOUR": 7,
    # Each reader's digest waits for DIGEST_HOUR in the reader's own time zone.
    "SEND_IN_READER_TIME": False,
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
    # Branding: the publisher's look, without editing code.
    "LOGO_URL": None,  # an https image shown above the site's name in pages and mails
    "ACCENT_COLOR": "#b3261e",  # buttons and section heads; white text must read on it
    "SITE_URL": None,  # the publisher's own site, linked from every page and mail
    "PRIVACY_URL": None,  # the privacy policy, linked from every page and mail footer
    "TEMPLATE_OVERRIDES": None,  # a folder whose templates win (instance/templates when unset)
    "WELCOME_MAIL": True,  # a mail after confirming: what comes, when, how to change or leave
    "EMBED_ORIGINS": [],
    # The languages readers may choose, the site's own first (each needs a shipped catalog).
    "LANGUAGES": ["en"],
    # One text for every language, or one per language ({"en": "...", "de": "..."}). This
    # shipped wording, left as it is, is said in each reader's language by the catalogs.
    "CONSENT_TEXT": N_(
        "Your information is secure. By opting in you agree to receive emails from us "
        "and you can opt out at any time."
    ),
    "PROXY_FIX_X_FOR": 0,
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_SIGNUP": "10 per minute; 100 per hour",
    "RATELIMIT_RESEND": "5 per hour",
    # The console's sign-in: attempts per IP, and per account (whatever address is typed).
    "RATELIMIT_SIGN_IN": "10 per minute; 60 per hour",
    "RATELIMIT_SIGN_IN_ACCOUNT": "5 per minute; 20 per hour",
    "RATELIMIT_HEADERS_ENABLED": True,
    "ADMIN_IDLE_MINUTES": 30,  # a console session unused this long ends
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
    # The JSON API (/api/v1): calls per token, and the largest body it reads.
    "API_RATE_LIMIT": "600 per minute",
    "API_MAX_BYTES": 1024 * 1024,
}

LIST_SETTINGS = ("SECRET_KEY_FALLBACKS", "TOPICS", "EMBED_ORIGINS", "FEEDS", "LANGUAGES")

# Text taken from the environment as written, not as JSON: a password of digits stays a
# string, a site called "null" keeps its name.
VERBATIM = (
    "SECRET_KEY",
    "SITE_NAME",
    "MAIL_FROM",
    "POSTAL_ADDRESS",
    "LIST_ID",
    "FEEDBACK_ID",
    "MAIL_BACKEND",
    "MAIL_OUTBOX",
    "SMTP_HOST",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "SMTP_SECURITY",
    "SMTP_CA_FILE",
    "SMTP_LOCAL_HOSTNAME",
    "DKIM_SELECTOR",
    "DKIM_DOMAIN",
    "DKIM_PRIVATE_KEY_FILE",
    "TIMEZONE",
    "DIGEST_WEEKDAY",
    "JOURNAL_DIR",
    "CONSENT_TEXT",
    "RATELIMIT_SIGNUP",
    "RATELIMIT_RESEND",
    "API_RATE_LIMIT",
    "RATELIMIT_SIGN_IN",
    "RATELIMIT_SIGN_IN_ACCOUNT",
    "VERP_DOMAIN",
    "VERP_LOCAL",
    "BOUNCE_WEBHOOK_TOKEN",
    "LOGO_URL",
    "ACCENT_COLOR",
    "SITE_URL",
    "PRIVACY_URL",
    "TEMPLATE_OVERRIDES",
)


def _as_list(value: Any) -> list[str]:
    """Accept a JSON list from the environment or a plain comma-separated string."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return [str(part) for part in value]
    return [str(value)]


def _per_language(value: Any) -> Any:
    """CONSENT_TEXT as text, or as a JSON object of texts by language from the environment.

    Read as written (a wording may hold any character), so an object is recognized by its
    braces; a text that only looks like one stays text and is checked as such.
    """
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


def load(app: Flask, test_config: Mapping[str, Any] | None) -> None:
    """Layer defaults, environment and test mapping into ``app.config`` and check them."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("NEWSLETTER")
    for key in VERBATIM:
        if f"NEWSLETTER_{key}" in os.environ:
            app.config[key] = os.environ[f"NEWSLETTER_{key}"]
    if test_config:
        app.config.from_mapping(test_config)
    for key in LIST_SETTINGS:
        app.config[key] = _as_list(app.config[key])
    app.config["CONSENT_TEXT"] = _per_language(app.config["CONSENT_TEXT"])
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{app.instance_path}/newsletter.db"
    if not app.config["TEMPLATE_OVERRIDES"]:
        app.config["TEMPLATE_OVERRIDES"] = f"{app.instance_path}/templates"
    if not app.config["JOURNAL_DIR"]:
        app.config["JOURNAL_DIR"] = f"{app.instance_path}/journal"
    if not app.config["MAIL_OUTBOX"]:
        app.config["MAIL_OUTBOX"] = f"{app.instance_path}/outbox"
    app.config["BASE_URL"] = str(app.config["BASE_URL"]).rstrip("/")
    # Behind https the session cookie (the console's sign-in, the CSRF token) never goes out
    # in clear; over plain http (make run, debug) a Secure cookie would never come back.
    chosen = "NEWSLETTER_SESSION_COOKIE_SECURE" in os.environ or (
        test_config is not None and "SESSION_COOKIE_SECURE" in test_config
    )
    if not chosen:
        app.config["SESSION_COOKIE_SECURE"] = app.config["BASE_URL"].startswith("https://")
    check(app)
    # Beat's crontab and the welcome mail read the day one way: its full name.
    app.config["DIGEST_WEEKDAY"] = weekday(app.config["DIGEST_WEEKDAY"])


# ---- checks: every setting in DEFAULTS has one (tests/core/test_settings.py makes sure)

# A check returns what is wrong with a value, or None when it is fine.
Check = Callable[[Any], "str | None"]

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _is_number(value: Any) -> bool:
    # JSON true is a bool, and a bool is an int to Python: it is no number of seconds.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(low: int, high: int | None = None, *, optional: bool = False) -> Check:
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if not (_is_number(value) and float(value).is_integer()):
            return f"must be a whole number {span}"
        if value < low or (high is not None and value > high):
            return f"must be a whole number {span}"
        return None

    return check


def _number(low: float, *, above: bool = False) -> Check:
    span = f"greater than {low:g}" if above else f"at least {low:g}"

    def check(value: Any) -> str | None:
        if not _is_number(value) or value < low or (above and value == low):
            return f"must be a number {span}"
        return None

    return check


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _text(*, optional: bool = False, empty: bool = True, one_line: bool = True) -> Check:
    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            return "must be text"
        if not empty and not value.strip():
            return "must not be empty"
        if one_line and ("\r" in value or "\n" in value):
            return "must be one line"
        return None

    return check


def _strings(value: Any) -> str | None:
    if not all(isinstance(item, str) and item.strip() for item in value):
        return "must be a list of non-empty texts (JSON or comma-separated)"
    return None


def _url(*schemes: str, optional: bool = False, path: bool = True) -> Check:
    def check(value: Any) -> str | None:
        # An empty value means unset: deploy files write ``NAME=${X:-}``.
        if (value is None or value == "") and optional:
            return None
        wanted = " or ".join(f"{scheme}://" for scheme in schemes) if schemes else "scheme://"
        if not isinstance(value, str):
            return f"must be a URL ({wanted}...)"
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  (raises on a port that is not a number)
        except ValueError:
            return f"must be a URL ({wanted}...)"
        if (schemes and parts.scheme not in schemes) or not parts.scheme or "://" not in value:
            return f"must be a URL ({wanted}...)"
        if schemes and parts.scheme.startswith("http") and not parts.hostname:
            return "must be a URL with a host name"
        if not path and (parts.path.strip("/") or parts.query or parts.fragment):
            return "must be an origin (scheme, host and port, no path)"
        return None

    return check


def _origins(value: Any) -> str | None:
    origin = _url("https", "http", path=False)
    for item in value:
        problem = origin(item)
        if problem:
            return f"{problem}, not {item!r}"
    return None


def _choice(*values: str, optional: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if value not in values:
            return f"must be one of {', '.join(values)}"
        return None

    return check


def weekday(value: Any) -> str | None:
    """The day's full name for a name, a three-letter abbreviation or a number (0 and 7:
    Sunday, as cron counts), else None."""
    text = str(value).strip().lower()
    if text in WEEKDAYS:
        return text
    for day in WEEKDAYS:
        if text == day[:3]:
            return day
    if text.isdigit() and int(text) <= 7:
        return WEEKDAYS[(int(text) - 1) % 7]
    return None


def _weekday(value: Any) -> str | None:
    if weekday(value) is not None:
        return None
    return f"must be a day of the week ({', '.join(WEEKDAYS)}, or mon ... sun, or 0-7)"


def _mapping(value: Any) -> str | None:
    return None if isinstance(value, Mapping) else "must be a JSON object"


def _wording(value: Any) -> str | None:
    if isinstance(value, Mapping):
        if not value:
            return "must be a text, or an object of texts by language with at least one"
        texts = value.values()
        if not all(isinstance(text, str) and text.strip() for text in texts):
            return "must give each language a non-empty text"
        return None
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty text, or an object of texts by language"
    return None


def _rate_limits(value: Any) -> str | None:
    from limits import parse_many

    try:
        parse_many(value)
    except (ValueError, TypeError):
        return 'must be limits like "10 per minute; 100 per hour"'
    return None


def _database_url(value: Any) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(str(value))
    except (ArgumentError, ValueError):
        return "must be a database URL (sqlite:///path or postgresql+psycopg://...)"
    return None


def _mailbox(value: Any) -> str | None:
    from newsletter.mail.message import _parse_mailbox

    if not isinstance(value, str):
        return "must be a mailbox, e.g. The Daily Ledger <newsletter@example.com>"
    try:
        found = _parse_mailbox(value)
    except (ConfigError, IndexError, ValueError):
        found = None
    if found is None or not found.username or not found.domain:
        return "must be one mailbox, e.g. The Daily Ledger <newsletter@example.com>"
    return None


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _accent(value: Any) -> str | None:
    """A #rrggbb colour on which white button text keeps a 4.5:1 contrast (WCAG AA)."""
    if not isinstance(value, str) or not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        return "must be a colour written #rrggbb (e.g. #b3261e)"
    rgb = (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))
    contrast = 1.05 / (_luminance(rgb) + 0.05)
    if contrast < 4.5:
        return (
            f"white text on it has a contrast of {contrast:.1f}:1; "
            "pick a darker colour (4.5:1 at least)"
        )
    return None


CHECKS: dict[str, Check] = {
    "SECRET_KEY": _text(empty=False),
    "SECRET_KEY_FALLBACKS": _strings,
    "SQLALCHEMY_DATABASE_URI": _database_url,
    "SQLALCHEMY_ENGINE_OPTIONS": _mapping,
    "BROKER_URL": _url(optional=True),
    "BASE_URL": _url("https", "http"),
    "SITE_NAME": _text(empty=False),
    "LOGO_URL": _url("https", optional=True),
    "ACCENT_COLOR": _accent,
    "SITE_URL": _url("https", "http", optional=True),
    "PRIVACY_URL": _url("https", "http", optional=True),
    "TEMPLATE_OVERRIDES": _text(optional=True),
    "MAIL_FROM": _mailbox,
    "POSTAL_ADDRESS": _text(one_line=False),  # doctor refuses an empty or example one
    "LIST_ID": _text(optional=True),
    "FEEDBACK_ID": _text(optional=True),
    "MAIL_BACKEND": _text(empty=False),  # the name is looked up below
    "MAIL_OUTBOX": _text(empty=False),
    "SMTP_HOST": _text(empty=False),
    "SMTP_PORT": _whole(1, 65535),
    "SMTP_USERNAME": _text(optional=True),
    "SMTP_PASSWORD": _text(optional=True),
    "SMTP_SECURITY": _choice("starttls", "tls", "none"),
    "SMTP_TIMEOUT": _number(0, above=True),
    "SMTP_CA_FILE": _text(optional=True),
    "SMTP_LOCAL_HOSTNAME": _text(optional=True),
    "SMTP_CONNECTIONS": _whole(1, 64),
    "DKIM_SELECTOR": _text(optional=True),
    "DKIM_DOMAIN": _text(optional=True),
    "DKIM_PRIVATE_KEY_FILE": _text(optional=True),  # doctor loads the key
    "FEEDS": _strings,
    "FEED_TIMEOUT": _number(0, above=True),
    "TOPICS": _strings,  # and the rules of readers.topics, below
    "TIMEZONE": _text(empty=False),  # looked up below
    "DIGEST_HOUR": _whole(0, 23),
    "SEND_IN_READER_TIME": _flag,
    "DIGEST_WEEKDAY": _weekday,
    "DIGEST_MAX_ARTICLES": _whole(1),
    "BATCH_SIZE": _whole(1),
    "JOURNAL_EVERY": _whole(1),
    "JOURNAL_DIR": _text(empty=False),
    "MAX_ATTEMPTS": _whole(1),
    "RETRY_BASE_SECONDS": _number(0, above=True),
    "LEASE_SECONDS": _number(0, above=True),
    "RECOVER_EVERY_SECONDS": _number(0, above=True),
    "SEND_RATE": _number(0),
    "CONFIRM_MAX_AGE_DAYS": _number(0, above=True),
    "CONFIRM_MAILS_PER_DAY": _whole(1),
    "SIGNUP_MIN_SECONDS": _number(0),
    "SIGNUP_FORM_MAX_AGE_HOURS": _number(0, above=True),
    "EMBED_ORIGINS": _origins,
    "LANGUAGES": _strings,  # and each must have a catalog, below
    "CONSENT_TEXT": _wording,  # and a text per language when given by language, below
    "PROXY_FIX_X_FOR": _whole(0),
    "RATELIMIT_STORAGE_URI": _url(),
    "RATELIMIT_SIGNUP": _rate_limits,
    "RATELIMIT_RESEND": _rate_limits,
    "RATELIMIT_SIGN_IN": _rate_limits,
    "RATELIMIT_SIGN_IN_ACCOUNT": _rate_limits,
    "ADMIN_IDLE_MINUTES": _whole(1),
    "RATELIMIT_HEADERS_ENABLED": _flag,
    "WELCOME_MAIL": _flag,
    "WTF_CSRF_TIME_LIMIT": _whole(1, optional=True),
    "SESSION_COOKIE_SAMESITE": _choice("Lax", "Strict", "None", optional=True),
    "SESSION_COOKIE_HTTPONLY": _flag,
    "MAX_CONTENT_LENGTH": _whole(1),
    "VERP_DOMAIN": _text(optional=True),
    "VERP_LOCAL": _text(),  # empty: "bounces"; its characters are checked where it is used
    "SOFT_BOUNCE_LIMIT": _whole(1),
    "SOFT_BOUNCE_WINDOW_DAYS": _number(0, above=True),
    "BOUNCE_WEBHOOK_TOKEN": _text(optional=True),
    "BOUNCE_MAX_BYTES": _whole(1),
    "API_RATE_LIMIT": _rate_limits,
    "API_MAX_BYTES": _whole(1),
}


# Their values are never repeated in a message (it may end up in a log).
SECRETS = ("SECRET_KEY", "SECRET_KEY_FALLBACKS", "SMTP_PASSWORD", "BOUNCE_WEBHOOK_TOKEN")


# URLs that may carry a password: shown with it masked.
URL_SETTINGS = ("SQLALCHEMY_DATABASE_URI", "BROKER_URL", "RATELIMIT_STORAGE_URI")


# A URL's user and password: up to the last "@" of its authority (a password may hold an
# "@", as redis-py and urllib read it); failing that, up to the first "@" (SQLAlchemy reads
# a password holding a "/" so).
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:/*)(?:[^/?#]*@|[^@]*@)")


def _masked(value: Any) -> str:
    """A URL with its user and password, if any, replaced by ***."""
    return _USERINFO.sub(r"\1***@", str(value))


def _shown(key: str, value: Any) -> str:
    # A list's check names the item that is wrong.
    if key in SECRETS or key in LIST_SETTINGS:
        return ""
    if key in URL_SETTINGS:
        return f", not {_masked(value)!r}"
    return f", not {value!r}"


# Words that mark a setting as a secret, for settings added later too.
_SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY$")


def effective(app: Flask) -> list[tuple[str, str, bool]]:
    """Every setting as the console shows it: (name, value with secrets masked, whether it
    came from the environment). A secret shows only whether it is set."""
    shown = []
    for key in DEFAULTS:
        value = app.config.get(key)
        if key in SECRETS or _SECRET_WORDS.search(key):
            if isinstance(value, list):
                text = f"{len(value)} set (hidden)" if value else "none"
            else:
                text = "set (hidden)" if value else "unset"
        elif isinstance(value, list):
            text = ", ".join(_masked(item) for item in value) if value else "none"
        elif value is None:
            text = "unset"
        elif isinstance(value, str):
            text = _masked(value)
        elif isinstance(value, Mapping):
            text = json.dumps(_masked_mapping(value), default=str)
        else:
            text = json.dumps(value) if isinstance(value, bool) else str(value)
        shown.append((key, text, f"NEWSLETTER_{key}" in os.environ))
    return shown


def _masked_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    """Engine options and the like: secrets in them (connect_args' password) hidden."""
    return {
        key: "***"
        if _SECRET_WORDS.search(str(key).upper())
        else _masked_mapping(item)
        if isinstance(item, Mapping)
        else _masked(item)
        if isinstance(item, str)
        else item
        for key, item in value.items()
    }


def problems(app: Flask) -> list[ConfigError]:
    """Everything wrong with the settings, each naming its setting; empty when all is well."""
    config = app.config
    found = [
        ConfigError(f"NEWSLETTER_{key}", problem + _shown(key, config[key]))
        for key, check in CHECKS.items()
        if (problem := check(config[key])) is not None
    ]
    wrong = {error.setting for error in found}
    relaxed = app.debug or app.testing
    if config["SECRET_KEY"] in (None, "", DEFAULT_SECRET_KEY) and not relaxed:
        found.append(
            ConfigError(
                "NEWSLETTER_SECRET_KEY",
                "the default secret key is only for debug and tests; set a long random value "
                '(python -c "import secrets; print(secrets.token_urlsafe(48))")',
            )
        )
    if config["SMTP_USERNAME"] and config["SMTP_SECURITY"] == "none":
        found.append(
            ConfigError(
                "NEWSLETTER_SMTP_SECURITY",
                "a username is set but the connection is not encrypted; "
                "AUTH is only sent over TLS (use starttls or tls)",
            )
        )
    if "NEWSLETTER_TOPICS" not in wrong:
        from newsletter.readers import topics

        try:
            if not config["TOPICS"]:
                raise ConfigError("NEWSLETTER_TOPICS", "list at least one topic")
            topics.check(config["TOPICS"])
        except ConfigError as exc:
            found.append(exc)
    if "NEWSLETTER_TIMEZONE" not in wrong:
        try:
            ZoneInfo(str(config["TIMEZONE"]))
        except (ValueError, OSError, ZoneInfoNotFoundError):  # OSError: a folder name
            found.append(
                ConfigError(
                    "NEWSLETTER_TIMEZONE",
                    f"{config['TIMEZONE']!r} is not an IANA time zone (e.g. Europe/Berlin)",
                )
            )
    if "NEWSLETTER_LANGUAGES" not in wrong:
        wording = config["CONSENT_TEXT"] if "NEWSLETTER_CONSENT_TEXT" not in wrong else None
        found.extend(_language_problems(config["LANGUAGES"], wording))
    if "NEWSLETTER_MAIL_BACKEND" not in wrong:
        from newsletter.mail.backends import backend_class

        try:
            backend_class(str(config["MAIL_BACKEND"]))  # unknown: refused at start, not mid-send
        except ConfigError as exc:
            found.append(exc)
    return found


def _language_problems(languages: list[str], wording: Any) -> list[ConfigError]:
    """LANGUAGES must name shipped catalogs; a CONSENT_TEXT by language must speak them all."""
    from newsletter.i18n import shipped

    if not languages:
        return [ConfigError("NEWSLETTER_LANGUAGES", "list at least one language (e.g. en)")]
    unknown = [code for code in languages if code not in shipped()]
    if unknown:
        return [
            ConfigError(
                "NEWSLETTER_LANGUAGES",
                f"{', '.join(map(repr, unknown))} has no catalog in this package "
                f"(it ships {', '.join(shipped())})",
            )
        ]
    if len(set(languages)) != len(languages):
        return [ConfigError("NEWSLETTER_LANGUAGES", "lists a language twice")]
    if not isinstance(wording, Mapping):
        return []
    missing = [code for code in languages if code not in wording]
    extra = [str(code) for code in wording if code not in languages]
    found = []
    if missing:
        found.append(
            ConfigError(
                "NEWSLETTER_CONSENT_TEXT",
                f"has no text for {', '.join(missing)} (every language of LANGUAGES needs one)",
            )
        )
    if extra:
        found.append(
            ConfigError(
                "NEWSLETTER_CONSENT_TEXT",
                f"has a text for {', '.join(extra)}, which LANGUAGES does not offer",
            )
        )
    return found


def check(app: Flask) -> None:
    """Refuse settings that are malformed, out of range, or unsafe outside debug and testing."""
    found = problems(app)
    if len(found) == 1:
        raise found[0]
    if found:
        raise ConfigErrors(found)
