"""DKIM: signatures on the bytes a real SMTP server received, verified with dkimpy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from flask import Flask

from newsletter.clock import utcnow
from newsletter.db.models import Article, Subscriber
from newsletter.extensions import db
from newsletter.mail.dkim import public_record
from tests.support.smtp_server import SMTPTestServer

SELECTOR = "news2026"
DOMAIN = "ledger.example"


def _write_key(folder: Path, kind: str) -> tuple[Path, str]:
    key: Any = (
        ed25519.Ed25519PrivateKey.generate()
        if kind == "ed25519"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    path = folder / f"dkim-{kind}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path, public_record(key)


@pytest.fixture(params=["rsa", "ed25519"])
def dkim_key(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    return _write_key(tmp_path_factory.mktemp("dkim"), request.param)


@pytest.fixture
def config_overrides(smtp_server: SMTPTestServer, dkim_key: tuple[Path, str]) -> dict[str, Any]:
    return smtp_server.app_config(
        DKIM_SELECTOR=SELECTOR,
        DKIM_DOMAIN=DOMAIN,
        DKIM_PRIVATE_KEY_FILE=str(dkim_key[0]),
        MAIL_FROM=f"The Daily Ledger <newsletter@{DOMAIN}>",
    )


def _seed(app: Flask) -> None:
    with app.app_context():
        db.session.add(
            Article(
                guid="urn:dkim:1",
                url="https://ledger.example/markets",
                title="Markets close higher — “a calm week”",
                summary="<p>Stocks rose.</p>",
                category="Business",
                topic="business",
                published_at=utcnow() - timedelta(hours=1),
            )
        )
        subscriber = Subscriber(
            email="reader@example.org", name="Zoë", status="active", frequency="daily"
        )
        subscriber.topics = ["business"]
        db.session.add(subscriber)
        db.session.commit()


def _dns(record: str) -> Any:
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return record.encode()

    return lookup


def test_digest_signature_verifies_and_covers_the_unsubscribe_headers(
    app: Flask, runner: Any, smtp_server: SMTPTestServer, dkim_key: tuple[Path, str]
) -> None:
    _seed(app)
    result = runner.invoke(args=["digest", "send", "--frequency", "daily"])
    assert result.exit_code == 0, result.output
    [received] = smtp_server.wait_for(1)
    assert dkim.verify(received.data, dnsfunc=_dns(dkim_key[1]))
    signature = dkim.DKIM(received.data)
    signature.verify(dnsfunc=_dns(dkim_key[1]))
    signed = set(signature.include_headers)
    for name in (
        b"from",
        b"subject",
        b"date",
        b"message-id",
        b"list-id",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
    ):
        assert name in signed, name


def test_a_changed_byte_breaks_the_signature(
    app: Flask, runner: Any, smtp_server: SMTPTestServer, dkim_key: tuple[Path, str]
) -> None:
    _seed(app)
    runner.invoke(args=["digest", "send", "--frequency", "daily"])
    [received] = smtp_server.wait_for(1)
    tampered = received.data.replace(b"Stocks rose", b"Stocks fell")
    assert tampered != received.data
    assert not dkim.verify(tampered, dnsfunc=_dns(dkim_key[1]))
    other = _write_key(Path(str(dkim_key[0].parent)), "rsa")[1]
    assert not dkim.verify(received.data, dnsfunc=_dns(other))
