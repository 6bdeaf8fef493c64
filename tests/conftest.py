"""Fixtures: the app on SQLite and on a fresh PostgreSQL database, clients and mail."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from sqlalchemy import create_engine, make_url, text

from newsletter import create_app
from newsletter.extensions import db, limiter
from newsletter.mail.backends import MemoryBackend
from newsletter.mail.message import OutgoingMessage
from tests.support import services

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def base_config(database_url: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-0123456789",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "MAIL_BACKEND": "memory",
        "MAIL_OUTBOX": str(tmp_path / "outbox"),
        "JOURNAL_DIR": str(tmp_path / "journal"),
        "BASE_URL": "https://news.example.test",
        "MAIL_FROM": "The Daily Ledger <newsletter@ledger.example>",
        "SIGNUP_MIN_SECONDS": 0,
        "RATELIMIT_STORAGE_URI": "memory://",
        "BROKER_URL": None,
    }


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database created for this test run on the machine's PostgreSQL, dropped at the end."""
    admin_url = make_url(services.POSTGRES_ADMIN_URL)
    name = f"newsletter_test_{secrets.token_hex(4)}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        services.unavailable(f"PostgreSQL at {admin_url.render_as_string()}", exc)
    yield admin_url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'newsletter.db'}"


_migrated: set[str] = set()


def _fresh_schema(app: Flask) -> None:
    """Migrate once per database, then empty every table before each test."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    with app.app_context():
        if url not in _migrated:
            upgrade()
            _migrated.add(url)
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    """Tests override settings by redefining this fixture or updating it first."""
    return {}


@pytest.fixture
def app(database_url: str, tmp_path: Path, config_overrides: dict[str, Any]) -> Iterator[Flask]:
    app = create_app({**base_config(database_url, tmp_path), **config_overrides})
    _fresh_schema(app)
    limiter.reset()
    MemoryBackend.outbox.clear()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module")
def mail_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """An app for building and sending mail only: its settings, no database touched."""
    return create_app(base_config("sqlite://", tmp_path_factory.mktemp("mail-app")))


@pytest.fixture
def broker_app(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Flask, Any]]:
    """An app on PostgreSQL whose broker is a Redis database of its own that no worker reads,
    with a client for that database."""
    url = services.REDIS_URL.rsplit("/", 1)[0] + "/12"
    try:
        import redis

        client = redis.Redis.from_url(url)
        client.flushdb()
    except Exception as exc:
        services.unavailable(f"Redis at {url}", exc)
    app = create_app({**base_config(postgres_url, tmp_path), "BROKER_URL": url})
    _fresh_schema(app)
    yield app, client
    client.flushdb()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def outbox() -> list[OutgoingMessage]:
    """Messages the memory backend received during this test."""
    return MemoryBackend.outbox


def form_fields(html: str) -> dict[str, str]:
    """The hidden fields (CSRF token, form start time) of a page's form."""
    fields = {}
    for tag in re.findall(r"<input\b[^>]*>", html):
        if 'type="hidden"' in tag:
            name = re.search(r'name="([^"]*)"', tag)
            value = re.search(r'value="([^"]*)"', tag)
            if name:
                fields[name.group(1)] = value.group(1) if value else ""
    return fields


def signup(client: FlaskClient, email: str, **fields: Any) -> Any:
    """Fill in and submit the signup form as a browser would, following its redirect to the
    answer's page (the redirect itself is the answer's ``history[0]``)."""
    page = client.get("/subscribe")
    data: dict[str, Any] = {
        **form_fields(page.get_data(as_text=True)),
        "email": email,
        "name": "",
        "consent": "y",
        "frequency": "weekly",
        "topics": ["analytics", "breaking-news"],
    }
    data.update(fields)
    return client.post("/subscribe", data=data, follow_redirects=True)


def link_from(message: OutgoingMessage, path: str) -> str:
    """The first link in a message's text part whose path starts with ``path``."""
    from email import message_from_bytes, policy

    parsed = message_from_bytes(message.data, policy=policy.default)
    text_part = parsed.get_body(("plain",))  # type: ignore[attr-defined]
    found = re.search(rf"https?://[^\s]+{re.escape(path)}[^\s]+", text_part.get_content())
    assert found, f"no {path} link in the mail"
    return found.group(0)


# --- Reader-side helpers (web-flow tests) ------------------------------------------------


def with_config(**settings: Any) -> pytest.MarkDecorator:
    """Run a test with ``settings`` on top of the test defaults (overrides config_overrides)."""
    return pytest.mark.parametrize("config_overrides", [settings], ids=["config"])


def path_of(url: str) -> str:
    """The path of an absolute link from a mail, to request it through the test client."""
    from urllib.parse import urlsplit

    return urlsplit(url).path


def add_subscriber(
    app: Flask,
    email: str = "reader@example.com",
    *,
    status: str = "active",
    topics: tuple[str, ...] = ("analytics",),
    frequency: str = "weekly",
    confirm_nonce: str | None = None,
) -> str:
    """Insert a reader directly and return the opaque uid their tokens carry."""
    from newsletter.db.models import Subscriber

    with app.app_context():
        subscriber = Subscriber(
            email=email, status=status, frequency=frequency, confirm_nonce=confirm_nonce
        )
        subscriber.topics = list(topics)
        db.session.add(subscriber)
        db.session.commit()
        return str(subscriber.uid)


def make_token(app: Flask, purpose: Any, payload: dict[str, Any]) -> str:
    """A token signed the way the app signs it, with the app's current keys."""
    from newsletter.tokens import sign

    with app.app_context():
        return sign(purpose, payload)


@contextmanager
def signed_ago(*, days: float = 0, seconds: float = 0) -> Iterator[None]:
    """Tokens signed inside this block carry a timestamp this far in the past.

    itsdangerous reads the clock through ``TimestampSigner.get_timestamp`` both when signing
    and when checking an age, so sign inside the block and verify outside it.
    """
    from itsdangerous import TimestampSigner

    original = TimestampSigner.get_timestamp
    shift = int(days * 86400 + seconds)
    TimestampSigner.get_timestamp = lambda signer: original(signer) - shift  # type: ignore[method-assign]
    try:
        yield
    finally:
        TimestampSigner.get_timestamp = original  # type: ignore[method-assign]


# Each answer's style nonce is random by design; ``without_nonce`` gives two answers that
# differ only by it the same bytes.
NONCE = re.compile(rb'nonce-[A-Za-z0-9_-]+|nonce="[A-Za-z0-9_-]+"')


def without_nonce(data: bytes) -> bytes:
    return NONCE.sub(b"nonce", data)


def db_state(app: Flask) -> dict[str, Any]:
    """Everything a reader's request may change, to compare before and after."""
    from sqlalchemy import func, select

    from newsletter.db.models import ConsentEvent, ConsentWording, Subscriber

    with app.app_context():
        readers = [
            (
                s.email,
                s.name,
                s.status,
                s.frequency,
                tuple(s.topics),
                s.confirm_nonce,
                s.confirmed_at,
                s.unsubscribed_at,
            )
            for s in db.session.scalars(select(Subscriber).order_by(Subscriber.id))
        ]
        return {
            "subscribers": readers,
            "consent_events": db.session.scalar(select(func.count()).select_from(ConsentEvent)),
            "wordings": db.session.scalar(select(func.count()).select_from(ConsentWording)),
        }


def mail_parts(message: OutgoingMessage) -> tuple[str, str]:
    """The decoded text and HTML parts of a message."""
    from email import message_from_bytes, policy

    parsed = message_from_bytes(message.data, policy=policy.default)
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    html = parsed.get_body(("html",)).get_content()  # type: ignore[attr-defined]
    return text, html


# The real SMTP server, Celery worker and browser fixtures live in their own modules; see
# their docstrings.
from tests.support.browser import browser, new_page, start_service  # noqa: E402, F401
from tests.support.celery_worker import celery_worker, live_worker, worker_app  # noqa: E402, F401
from tests.support.clock import clock  # noqa: E402, F401
from tests.support.smtp_server import (  # noqa: E402, F401
    backend_for,
    smtp_server,
    smtp_server_factory,
    tls_certificate,
)
