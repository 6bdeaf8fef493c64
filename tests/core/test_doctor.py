"""``newsletter doctor`` names every problem of a broken configuration, and passes a good one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask_migrate import upgrade

from newsletter import create_app
from newsletter.extensions import db
from tests.conftest import base_config
from tests.mail.test_dkim import _write_key
from tests.support import services
from tests.support.smtp_server import SMTPTestServer


def _doctor(config: dict[str, Any], *args: str) -> Any:
    app = create_app(config)
    try:
        return app.test_cli_runner().invoke(args=["doctor", *args])
    finally:
        with app.app_context():
            db.engine.dispose()


def test_a_broken_configuration_gets_each_problem_named(tmp_path: Path) -> None:
    key, _ = _write_key(tmp_path, "rsa")
    _, other_record = _write_key(tmp_path, "ed25519")
    config = {
        **base_config(f"sqlite:///{tmp_path}/never-migrated.db", tmp_path),
        "SECRET_KEY": "short",
        "BASE_URL": "http://news.example",
        "POSTAL_ADDRESS": "",
        "MAIL_FROM": "News <newsletter@ledger.example>",
        "DKIM_SELECTOR": "s1",
        "DKIM_DOMAIN": "elsewhere.example",
        "DKIM_PRIVATE_KEY_FILE": str(key),
        "MAIL_BACKEND": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": 9,  # nothing listens on the discard port here
        "SMTP_SECURITY": "starttls",
        "SMTP_TIMEOUT": 2,
        "BROKER_URL": "redis://127.0.0.1:9/0",
    }
    result = _doctor(config, "--dkim-record", other_record)
    out = result.output
    assert result.exit_code == 1, (out, result.exception)
    for expected in (
        "ERROR    secret key: NEWSLETTER_SECRET_KEY is shorter than 32 characters",
        "ERROR    base URL: http://news.example is not https",
        "ERROR    postal address",
        "ERROR    DKIM: From domain ledger.example is not aligned with the DKIM domain",
        "ERROR    DKIM: the private key does not match the given public record",
        "ERROR    SMTP: 127.0.0.1:9 (starttls)",
        "ERROR    broker: not reachable",
        "ERROR    database: at migration None",
        "fix: run: newsletter db upgrade",
    ):
        assert expected in out, f"{expected!r} missing from:\n{out}"


def test_a_good_configuration_passes(
    tmp_path: Path, smtp_server_factory: Callable[..., SMTPTestServer]
) -> None:
    server = smtp_server_factory(security="starttls", auth=("news", "s3cret-pass"))
    key, record = _write_key(tmp_path, "rsa")
    config = {
        **base_config(f"sqlite:///{tmp_path}/ok.db", tmp_path),
        **server.app_config(),
        "SECRET_KEY": "a-long-random-secret-key-for-this-test-0123456789",
        "BASE_URL": "https://news.ledger.example",
        "POSTAL_ADDRESS": "The Daily Ledger, 4 Press Row, Springfield 12345",
        "MAIL_FROM": "News <newsletter@ledger.example>",
        "DKIM_SELECTOR": "s1",
        "DKIM_DOMAIN": "ledger.example",
        "DKIM_PRIVATE_KEY_FILE": str(key),
        "BROKER_URL": services.REDIS_URL,
    }
    if not services.port_open("127.0.0.1", 6379):
        services.unavailable("Redis", "port 6379 closed")
    app = create_app(config)
    with app.app_context():
        upgrade()
        db.engine.dispose()
    result = _doctor(config, "--dkim-record", record)
    assert result.exit_code == 0, result.output
    assert "ERROR" not in result.output
    assert "ok       SMTP: " in result.output and "connected with TLS" in result.output
    assert "ok       DKIM: key matches the record of selector s1" in result.output
    assert "0 errors, " in result.output
