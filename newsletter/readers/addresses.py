"""Validation and normalization of readers' email addresses."""

from __future__ import annotations

import hashlib

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import InvalidAddress

MAX_LENGTH = 254  # RFC 5321 path limit less the angle brackets


def normalize(address: str) -> str:
    """Return the canonical form of ``address`` or raise InvalidAddress with a reason."""
    candidate = address.strip()
    if not candidate:
        raise InvalidAddress(address, "Enter your email address.")
    # U+FFFD stands for bytes that were not UTF-8 (a form body, a CSV file): not what
    # anybody typed, so not an address to write to.
    if len(candidate) > MAX_LENGTH or any(ch in candidate for ch in "\r\n\0\ufffd"):
        raise InvalidAddress(address, "That email address is not valid.")
    try:
        # No DNS: deliverability is learned from bounces, and lookups would make
        # the signup answer's timing depend on the address.
        result = validate_email(candidate, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidAddress(address, str(exc)) from exc
    # Mailbox names are case-insensitive at every large provider; one row per reader.
    return result.normalized.lower()


def address_hash(email: str) -> str:
    """The suppression key of a normalized address; kept after the address itself is erased."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()
