"""VERP return paths: ``bounces+<delivery id>-<hmac>@domain``, so a bounce names its delivery.

The HMAC makes the address unforgeable: a bounce sent to an address we did not issue (a
made-up id, a tampered tag, a retired key) is recognized as forged and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import idna
from flask import current_app

from newsletter.errors import ConfigError

TAG_LENGTH = 10  # base32 characters: 50 bits, ample for a tag nobody can try online
_PURPOSE = b"newsletter.verp.v1"
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*/=?^_`{|}~-]+)*")


@lru_cache(maxsize=16)
def derive_key(secret: str | bytes) -> bytes:
    """The VERP key derived from one secret key, so no other purpose's signature fits."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(raw, _PURPOSE, hashlib.sha256).digest()


_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648's alphabet, lower-cased
_TAG_BITS = 5 * TAG_LENGTH
_TAG_BYTES = -(-_TAG_BITS // 8)


def tag(delivery_id: int, key: bytes) -> str:
    """The truncated, lower-case base32 HMAC of a delivery id.

    The same characters as ``base64.b32encode(digest)[:TAG_LENGTH].lower()``, taken
    straight from the leading bits: this runs once per message sent.
    """
    digest = hmac.digest(key, str(delivery_id).encode("ascii"), "sha256")  # one C call
    bits = int.from_bytes(digest[:_TAG_BYTES], "big") >> (8 * _TAG_BYTES - _TAG_BITS)
    return "".join(_BASE32[(bits >> shift) & 31] for shift in range(_TAG_BITS - 5, -1, -5))


def make(delivery_id: int, key: bytes, local: str, domain: str) -> str:
    """The VERP address of a delivery for a given key, local part and domain."""
    if delivery_id < 0:
        raise ValueError("a delivery id is never negative")
    return f"{local}+{delivery_id}-{tag(delivery_id, key)}@{domain}"


def split(address: str, local: str) -> tuple[int, str] | None:
    """The (id, tag) an address of VERP shape carries, or None when it has another shape."""
    found = _pattern(local.lower()).fullmatch(address.strip().strip("<>").strip().lower())
    if found is None:
        return None
    return int(found.group(1)), found.group(2)


@lru_cache(maxsize=8)
def _pattern(local: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(local)}\+(\d{{1,18}})-([a-z2-7]{{{TAG_LENGTH}}})@[^@\s]+")


def verify(address: str, keys: Iterable[bytes], local: str) -> int | None:
    """The delivery id of a genuine VERP address; None if forged, tampered or not VERP."""
    parts = split(address, local)
    if parts is None:
        return None
    delivery_id, given = parts
    # Every key is tried (no early exit), so timing says nothing about which one matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(tag(delivery_id, key), given)
    return delivery_id if matched else None


def _keys() -> Sequence[bytes]:
    config = current_app.config
    return [
        derive_key(secret) for secret in (config["SECRET_KEY"], *config["SECRET_KEY_FALLBACKS"])
    ]


def local_part() -> str:
    """The configured local part before the ``+`` (NEWSLETTER_VERP_LOCAL)."""
    local = str(current_app.config.get("VERP_LOCAL") or "bounces")
    if not _LOCAL.fullmatch(local) or "+" in local or not local.isascii():
        raise ConfigError("NEWSLETTER_VERP_LOCAL", "must be a plain ASCII local part without '+'")
    return local


def domain() -> str:
    """The configured VERP domain, or the domain of NEWSLETTER_MAIL_FROM, in ASCII form."""
    from newsletter.mail.message import mail_domain

    configured = current_app.config.get("VERP_DOMAIN")
    name = str(configured).strip() if configured else mail_domain()
    if not name.isascii():
        name = idna.encode(name, uts46=True).decode("ascii")
    return name.lower()


def address(delivery_id: int) -> str:
    """The return path (SMTP MAIL FROM) for one delivery, signed with the newest key."""
    return issuer()(delivery_id)


def issuer() -> Callable[[int], str]:
    """``address`` with the settings read once, for a digest's many deliveries."""
    key, local, name = derive_key(current_app.config["SECRET_KEY"]), local_part(), domain()
    return lambda delivery_id: make(delivery_id, key, local, name)


def parse(value: str) -> int | None:
    """The delivery id in a VERP address we issued, or None (forged, tampered, other shape)."""
    return verify(value, _keys(), local_part())


def looks_like(value: str) -> bool:
    """Whether an address has our VERP shape, whether or not its tag is genuine."""
    return split(value, local_part()) is not None
