"""Validation and normalization of readers' email addresses."""

from __future__ import annotations

import hashlib

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import InvalidAddress
from newsletter.i18n import N_

MAX_LENGTH = 254  # RFC 5321 path limit less the angle brackets


def normalize(address: str) -> str:
    """Return the canonical form of ``address`` or raise InvalidAddress with a reason."""
    candidate = address.strip()
    if not candidate:
        raise InvalidAddress(address, N_("Enter your email address."))
    # U+FFFD stands for bytes that were not UTF-8 (a form body, a CSV file): not what
    # anybody typed, so not an address to write to.
    if len(candidate) > MAX_LENGTH or any(ch in candidate for ch in "\r\n\0\ufffd"):
        raise InvalidAddress(address, N_("That email address is not valid."))
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


# Common slips in the domains most readers use, and in the endings of any domain. A small
# table on purpose: no lookup (it would make the signup answer's timing depend on the
# address), and a suggestion is only shown, never applied.
_DOMAIN_TYPOS = {
    "gmail.com": "gmial.com gmai.com gmal.com gmil.com gmaill.com gmali.com gamil.com gnail.com"
    " gmaul.com gmail.co gmail.cm gmail.om",
    "hotmail.com": "hotmial.com hotmal.com hotmai.com hotmil.com hotmaill.com hotamil.com"
    " hormail.com hotmail.co hotmail.cm",
    "yahoo.com": "yahooo.com yaho.com yahho.com yhaoo.com tahoo.com yahoo.cm",
    "outlook.com": "outlok.com outllok.com outloo.com putlook.com outlook.co",
    "icloud.com": "iclod.com icoud.com icluod.com icould.com icloud.co",
    "live.com": "liv.com live.cm",
    "aol.com": "aoll.com aol.co",
}
_DOMAINS = {typo: right for right, typos in _DOMAIN_TYPOS.items() for typo in typos.split()}
_ENDINGS = {
    ".con": ".com", ".cmo": ".com", ".ocm": ".com", ".vom": ".com", ".comm": ".com",
    ".xom": ".com", ".ogr": ".org", ".prg": ".org", ".nte": ".net", ".ent": ".net",
}  # fmt: skip


def suggest(email: str) -> str | None:
    """The address a reader most likely meant, for a common domain typo; None if it looks right.

    ``pat@gmial.con`` -> ``pat@gmail.com``.
    """
    local, at, domain = email.rpartition("@")
    if not at:
        return None
    fixed = domain.lower()
    for wrong, right in _ENDINGS.items():
        if fixed.endswith(wrong):
            fixed = fixed[: -len(wrong)] + right
            break
    fixed = _DOMAINS.get(fixed, fixed)
    return f"{local}@{fixed}" if fixed != domain.lower() else None
