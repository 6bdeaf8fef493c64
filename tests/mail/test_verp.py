"""VERP return paths: an id plus an HMAC, forged or tampered ones refused."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from newsletter import create_app
from newsletter.errors import ConfigError
from newsletter.mail import verp
from newsletter.mail.backends import get_backend
from newsletter.mail.message import build, mailbox
from tests.conftest import base_config
from tests.support.smtp_server import SMTPTestServer

KEY = verp.derive_key("a-secret-key-for-tests")
OTHER_KEY = verp.derive_key("another-secret-key")


def settings_app(tmp_path: Path, **overrides: Any) -> Flask:
    """An app for settings only: VERP needs no database."""
    return create_app({**base_config("sqlite://", tmp_path), **overrides})


@pytest.fixture
def app_ctx(tmp_path: Path) -> Iterator[Flask]:
    app = settings_app(tmp_path)
    with app.app_context():
        yield app


# ---- pure functions


def test_address_shape_and_round_trip() -> None:
    address = verp.make(12345, KEY, "bounces", "ledger.example")
    local, _, domain = address.partition("@")
    assert domain == "ledger.example"
    assert local.startswith("bounces+12345-")
    tag = local.rpartition("-")[2]
    assert len(tag) == verp.TAG_LENGTH and set(tag) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert verp.verify(address, [KEY], "bounces") == 12345


def test_tag_is_deterministic_and_differs_per_id() -> None:
    assert verp.tag(1, KEY) == verp.tag(1, KEY)
    assert len({verp.tag(number, KEY) for number in range(1000)}) == 1000


@pytest.mark.parametrize(
    "mangle",
    [
        lambda a: a.replace("+7-", "+8-"),  # another delivery's id with this one's tag
        lambda a: (
            a[: a.index("@") - 1] + ("a" if a[a.index("@") - 1] != "a" else "b") + a[a.index("@") :]
        ),
        lambda a: a.replace("bounces+", "bounce+"),  # another local part
        lambda a: a.rpartition("-")[0] + "@ledger.example",  # no tag
        lambda a: a.replace("+7-", "+-7-"),
        lambda a: a.replace("+7-", "+07x-"),
        lambda a: a.partition("@")[0],  # no domain
        lambda a: "",
        lambda a: "bounces@ledger.example",
    ],
    ids=[
        "other-id",
        "tampered-tag",
        "other-local",
        "no-tag",
        "negative",
        "junk-id",
        "no-domain",
        "empty",
        "plain-address",
    ],
)
def test_forged_or_tampered_addresses_are_refused(mangle: Any) -> None:
    genuine = verp.make(7, KEY, "bounces", "ledger.example")
    assert verp.verify(mangle(genuine), [KEY], "bounces") is None


def test_another_keys_tag_is_refused() -> None:
    forged = verp.make(7, OTHER_KEY, "bounces", "ledger.example")
    assert verp.verify(forged, [KEY], "bounces") is None
    assert verp.verify(forged, [KEY, OTHER_KEY], "bounces") == 7


def test_case_and_brackets_do_not_matter() -> None:
    # Some relays upper-case or bracket the envelope recipient; the tag is case-insensitive.
    address = verp.make(99, KEY, "bounces", "ledger.example")
    assert verp.verify(f"<{address.upper()}>", [KEY], "bounces") == 99


def test_the_key_is_derived_for_this_purpose_only() -> None:
    secret = b"a-secret-key-for-tests"
    assert verp.derive_key(secret) == KEY  # str and bytes secrets alike
    assert secret != KEY and len(KEY) == 32
    # A tag made straight from the secret (as another feature might sign ids) does not fit.
    assert verp.tag(7, KEY) != verp.tag(7, secret)
    assert hmac.new(secret, b"newsletter.verp.v1", hashlib.sha256).digest() == KEY


def test_split_reports_shape_without_checking() -> None:
    assert verp.split("bounces+42-abcdefghij@x.example", "bounces") == (42, "abcdefghij")
    assert verp.split("newsletter@x.example", "bounces") is None
    assert verp.split("bounces+42-abc@x.example", "bounces") is None


# ---- with the app's settings


def test_address_uses_mail_from_domain_and_parse_inverts_it(app_ctx: Flask) -> None:
    address = verp.address(31337)
    assert address.startswith("bounces+31337-") and address.endswith("@ledger.example")
    assert verp.parse(address) == 31337
    assert verp.looks_like(address)
    assert verp.parse(address.replace("31337", "31338")) is None


def test_configured_domain_and_local_part(tmp_path: Path) -> None:
    app = settings_app(tmp_path, VERP_DOMAIN="Bounce.Ledger.Example", VERP_LOCAL="rp")
    with app.app_context():
        address = verp.address(5)
        assert address.startswith("rp+5-") and address.endswith("@bounce.ledger.example")
        assert verp.parse(address) == 5
        assert not verp.looks_like(address.replace("rp+", "bounces+"))


def test_international_domain_is_written_in_ascii(tmp_path: Path) -> None:
    app = settings_app(tmp_path, MAIL_FROM="Zeitung <newsletter@bücher.example>")
    with app.app_context():
        address = verp.address(5)
        assert address.isascii() and address.endswith("@xn--bcher-kva.example")
        assert verp.parse(address) == 5


@pytest.mark.parametrize("local", ["bounces+x", "", "a b", "bö"])
def test_a_bad_local_part_setting_is_refused(tmp_path: Path, local: str) -> None:
    app = settings_app(tmp_path, VERP_LOCAL=local or " ")
    with app.app_context(), pytest.raises(ConfigError, match="NEWSLETTER_VERP_LOCAL"):
        verp.address(1)


def test_key_rotation_old_addresses_still_verify(tmp_path: Path) -> None:
    old_app = settings_app(tmp_path, SECRET_KEY="the-old-key-0123456789")
    with old_app.app_context():
        old_address = verp.address(77)
    rotated = settings_app(
        tmp_path,
        SECRET_KEY="the-new-key-9876543210",
        SECRET_KEY_FALLBACKS=["the-old-key-0123456789"],
    )
    with rotated.app_context():
        assert verp.parse(old_address) == 77
        new_address = verp.address(77)
        assert new_address != old_address  # signed with the newest key
        assert verp.parse(new_address) == 77
    retired = settings_app(tmp_path, SECRET_KEY="the-new-key-9876543210")
    with retired.app_context():
        assert verp.parse(old_address) is None


def test_verp_sender_reaches_the_smtp_envelope(smtp_server: SMTPTestServer, tmp_path: Path) -> None:
    """The wiring the digest uses: the message's envelope sender replaced per delivery."""
    app = create_app({**base_config("sqlite://", tmp_path), **smtp_server.app_config()})
    with app.app_context():
        outgoing = build(
            to=mailbox("reader@example.org"), subject="Hi", text="Hi", html="<p>Hi</p>"
        )
        outgoing = dataclasses.replace(outgoing, sender=verp.address(4242))
        with get_backend() as backend:
            backend.send(outgoing)
        [received] = smtp_server.messages
        assert received.mail_from == outgoing.sender
        assert verp.parse(received.mail_from) == 4242
        # The header From is unchanged: only the return path carries the VERP address.
        assert received.header("From") == "The Daily Ledger <newsletter@ledger.example>"


def test_tags_are_the_leading_base32_characters_of_the_hmac() -> None:
    # The tag is computed from the digest's leading bits on the sending path; it must stay
    # the RFC 4648 base32 of the HMAC, or addresses already out in the world stop verifying.
    for delivery_id in [*range(0, 3000), 2**31, 10**17 + 7]:
        key = hashlib.sha256(str(delivery_id).encode()).digest()
        digest = hmac.new(key, str(delivery_id).encode(), hashlib.sha256).digest()
        expected = base64.b32encode(digest).decode("ascii")[: verp.TAG_LENGTH].lower()
        assert verp.tag(delivery_id, key) == expected
