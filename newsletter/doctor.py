"""Pre-flight checks of the configuration a sender needs before the first send."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from sqlalchemy import text

from newsletter import config
from newsletter.config import DEFAULT_SECRET_KEY, DEFAULTS
from newsletter.errors import ConfigError, MailError
from newsletter.extensions import db


@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``ok``, ``warning`` or ``error``, what was found and the fix."""

    level: str
    check: str
    message: str
    fix: str = ""


Check = Callable[[Flask, "str | None"], Iterator[Finding]]


def _settings(app: Flask, _: str | None) -> Iterator[Finding]:
    """Every setting's own check (as at start-up), then what is only read when used."""
    from newsletter.mail import verp

    found = [(str(problem), f"correct {problem.setting}") for problem in config.problems(app)]
    ca_file = app.config["SMTP_CA_FILE"]
    if ca_file and not Path(ca_file).is_file():
        found.append((f"NEWSLETTER_SMTP_CA_FILE: {ca_file} is not a file", "give the CA's path"))
    try:
        verp.local_part()
    except ConfigError as exc:
        found.append((str(exc), "e.g. NEWSLETTER_VERP_LOCAL=bounces"))
    for message, fix in found:
        yield Finding("error", "settings", message, fix)
    if not found:
        yield Finding("ok", "settings", f"all {len(config.CHECKS)} are valid")


def _secret(app: Flask, _: str | None) -> Iterator[Finding]:
    key = app.config["SECRET_KEY"]
    if not key or key == DEFAULT_SECRET_KEY:
        yield Finding(
            "error",
            "secret key",
            "NEWSLETTER_SECRET_KEY is the built-in default",
            'set it to a long random value: python -c "import secrets; '
            'print(secrets.token_urlsafe(48))"',
        )
    elif len(str(key)) < 32:
        yield Finding(
            "error",
            "secret key",
            "NEWSLETTER_SECRET_KEY is shorter than 32 characters",
            "use a long random value; keep the old one in SECRET_KEY_FALLBACKS",
        )
    else:
        yield Finding("ok", "secret key", "set")


def _base_url(app: Flask, _: str | None) -> Iterator[Finding]:
    url = app.config["BASE_URL"]
    if url.startswith("https://"):
        yield Finding("ok", "base URL", url)
    elif app.debug:
        yield Finding("warning", "base URL", f"{url} is not https (allowed in debug only)")
    else:
        yield Finding(
            "error",
            "base URL",
            f"{url} is not https",
            "set NEWSLETTER_BASE_URL=https://...; List-Unsubscribe must be https",
        )


def _postal_address(app: Flask, _: str | None) -> Iterator[Finding]:
    address = str(app.config["POSTAL_ADDRESS"] or "").strip()
    if not address or address == DEFAULTS["POSTAL_ADDRESS"]:
        yield Finding(
            "error",
            "postal address",
            "NEWSLETTER_POSTAL_ADDRESS is missing or the example",
            "set the publisher's real postal address (shown in every mail)",
        )
    else:
        yield Finding("ok", "postal address", address)


def _dkim(app: Flask, record: str | None) -> Iterator[Finding]:
    from newsletter.mail import dkim as dkim_signing
    from newsletter.mail.message import sender_address

    try:
        signer = dkim_signing.signer()
    except ConfigError as exc:
        yield Finding("error", "DKIM", str(exc), "check the DKIM settings and the key file")
        return
    if signer is None:
        yield Finding(
            "warning",
            "DKIM",
            "signing is off",
            "set NEWSLETTER_DKIM_SELECTOR, _DOMAIN and _PRIVATE_KEY_FILE",
        )
        return
    from_domain = sender_address().domain.lower()
    dkim_domain = signer.domain.lower()
    if from_domain != dkim_domain and not from_domain.endswith("." + dkim_domain):
        yield Finding(
            "error",
            "DKIM",
            f"From domain {from_domain} is not aligned with the DKIM domain {dkim_domain}",
            "sign with the From domain (DMARC alignment)",
        )
    published = dkim_signing.public_record(signer.key)
    if record is None:
        yield Finding(
            "warning",
            "DKIM",
            f"key loads; not compared with DNS. Publish at "
            f"{signer.selector}._domainkey.{signer.domain}: {published}",
        )
        return
    import dkim

    probe = signer.sign(
        b"From: " + str(sender_address()).encode() + b"\r\nSubject: doctor\r\n\r\nprobe\r\n"
    )
    try:
        matches = dkim.verify(probe, dnsfunc=lambda name, timeout=5: record.encode())
    except Exception:  # dkimpy raises several kinds for a record of another key type
        matches = False
    if matches:
        yield Finding("ok", "DKIM", f"key matches the record of selector {signer.selector}")
    else:
        yield Finding(
            "error",
            "DKIM",
            "the private key does not match the given public record",
            f"publish: {published}",
        )


def _smtp(app: Flask, _: str | None) -> Iterator[Finding]:
    if app.config["MAIL_BACKEND"] != "smtp":
        yield Finding(
            "warning",
            "SMTP",
            f"mail goes to the {app.config['MAIL_BACKEND']!r} backend, not a relay",
            "set NEWSLETTER_MAIL_BACKEND=smtp to send for real",
        )
        return
    from newsletter.mail.smtp import SMTPBackend

    backend = SMTPBackend(app.config)
    where = f"{backend.host}:{backend.port} ({backend.security})"
    try:
        backend.open()
    except (ConfigError, MailError) as exc:
        yield Finding(
            "error",
            "SMTP",
            f"{where}: {exc}",
            "check NEWSLETTER_SMTP_HOST, _PORT, _SECURITY and credentials",
        )
        return
    finally:
        backend.close()
    if backend.security == "none":
        yield Finding(
            "error",
            "SMTP",
            f"{where}: reachable but without TLS",
            "use NEWSLETTER_SMTP_SECURITY=starttls or tls",
        )
    else:
        yield Finding("ok", "SMTP", f"{where}: connected with TLS")


def _broker(app: Flask, _: str | None) -> Iterator[Finding]:
    if not app.config["BROKER_URL"]:
        yield Finding(
            "warning",
            "broker",
            "none: tasks run inside the web and CLI processes",
            "set NEWSLETTER_BROKER_URL=redis://... and run workers for production",
        )
        return
    try:
        with app.extensions["celery"].connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        yield Finding("ok", "broker", "reachable")
    except Exception as exc:  # any failure is the finding
        yield Finding("error", "broker", f"not reachable: {exc}", "check NEWSLETTER_BROKER_URL")


def _database(app: Flask, _: str | None) -> Iterator[Finding]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = MigrationContext.configure(connection).get_current_revision()
    except Exception as exc:  # any failure is the finding
        yield Finding(
            "error", "database", f"not reachable: {exc}", "check NEWSLETTER_SQLALCHEMY_DATABASE_URI"
        )
        return
    config = app.extensions["migrate"].migrate.get_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    if current == head:
        yield Finding("ok", "database", f"reachable, migrations current ({head})")
    else:
        yield Finding(
            "error",
            "database",
            f"at migration {current}, code expects {head}",
            "run: newsletter db upgrade",
        )


CHECKS: tuple[Check, ...] = (
    _settings,
    _secret,
    _base_url,
    _postal_address,
    _dkim,
    _smtp,
    _broker,
    _database,
)


def run(app: Flask, dkim_record: str | None = None) -> list[Finding]:
    """Every finding of every check, in order."""
    return [finding for check in CHECKS for finding in check(app, dkim_record)]
