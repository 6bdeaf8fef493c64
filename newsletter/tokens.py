"""Signed tokens for links in mail and forms: one salt per purpose, rotating keys.

Signed tokens carry opaque ids only, readable by anyone who holds them. The one token that
must carry an address (the signup answer's, see ``seal``) is encrypted as well.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from enum import StrEnum
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes

from newsletter.clock import utcnow
from newsletter.errors import TokenExpired, TokenInvalid


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    SIGNUP_FORM = "signup-form"
    CHECK_INBOX = "check-inbox"


def _serializer(purpose: Purpose) -> URLSafeTimedSerializer:
    config = current_app.config
    # itsdangerous signs with the last key and verifies with all of them, oldest first.
    return _cached_serializer((*config["SECRET_KEY_FALLBACKS"], config["SECRET_KEY"]), purpose)


@lru_cache(maxsize=64)
def _cached_serializer(keys: tuple[str, ...], purpose: Purpose) -> URLSafeTimedSerializer:
    # Digests sign two links per reader: build each serializer once, not per reader.
    return URLSafeTimedSerializer(list(keys), salt=f"newsletter.{purpose.value}")


class _Minter:
    """Makes the tokens ``URLSafeTimedSerializer.dumps`` makes, at a fraction of the cost.

    A digest signs two links per reader, so this is on the sending path. The HMAC key is
    derived once, and the zlib attempt is skipped: it never shortens payloads of a few
    opaque ids, and ``loads`` reads uncompressed payloads either way.
    """

    def __init__(self, serializer: URLSafeTimedSerializer) -> None:
        signer = serializer.make_signer(serializer.salt)
        assert isinstance(signer, TimestampSigner)
        # The clock is the signer's own (looked up per call), which verification reads too.
        self._signer = signer
        self._mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)
        self._second = -1
        self._stamp = b""

    def __call__(self, payload: dict[str, Any]) -> str:
        return self.seal(encoded_payload(payload))

    def seal(self, encoded: bytes) -> str:
        """The token for a payload already encoded with ``encoded_payload``."""
        now = self._signer.get_timestamp()
        if now != self._second:
            self._second, self._stamp = now, b"." + base64_encode(int_to_bytes(now))
        value = encoded + self._stamp
        mac = self._mac.copy()  # keyed once; itsdangerous' sha1 is not one hmac.digest takes fast
        mac.update(value)
        return (value + b"." + base64_encode(mac.digest())).decode("ascii")


# itsdangerous' compact JSON, made once rather than per token.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encoded_payload(payload: dict[str, Any]) -> bytes:
    """A token's payload part, the same for every purpose: encode once, seal several times."""
    return base64_encode(_JSON.encode(payload).encode("utf-8"))


def minter(purpose: Purpose) -> _Minter:
    """``sign`` for one purpose with the current keys, for signing many tokens in a row."""
    config = current_app.config
    return _cached_minter((*config["SECRET_KEY_FALLBACKS"], config["SECRET_KEY"]), purpose)


@lru_cache(maxsize=64)
def _cached_minter(keys: tuple[str, ...], purpose: Purpose) -> _Minter:
    return _Minter(_cached_serializer(keys, purpose))


# The signup answer shows the address typed for as long as a reader may look at it again.
CHECK_INBOX_SECONDS = 3600


def max_age(purpose: Purpose) -> int | None:
    """Seconds a token of this purpose stays valid; None for links that must keep working."""
    config = current_app.config
    if purpose is Purpose.CONFIRM:
        return int(float(config["CONFIRM_MAX_AGE_DAYS"]) * 86400)
    if purpose is Purpose.SIGNUP_FORM:
        return int(float(config["SIGNUP_FORM_MAX_AGE_HOURS"]) * 3600)
    if purpose is Purpose.CHECK_INBOX:
        return CHECK_INBOX_SECONDS
    # Unsubscribe and preferences links work until their signing key is retired.
    return None


def sign(purpose: Purpose, payload: dict[str, Any]) -> str:
    """Return a URL-safe token carrying ``payload`` (opaque ids only) for ``purpose``."""
    return minter(purpose)(payload)


def load(purpose: Purpose, token: str) -> dict[str, Any]:
    """Verify ``token`` for ``purpose`` and return its payload, or raise a TokenError."""
    serializer = _serializer(purpose)
    try:
        payload = serializer.loads(token, max_age=max_age(purpose))
    except SignatureExpired as exc:
        expired_payload = None
        if isinstance(exc.payload, bytes):
            try:
                expired_payload = serializer.load_payload(exc.payload)
            except BadSignature:
                expired_payload = None
        raise TokenExpired("this link has expired", expired_payload) from exc
    except BadSignature as exc:
        raise TokenInvalid("this link is not valid") from exc
    return _checked(payload)


def load_age(purpose: Purpose, token: str) -> float:
    """Verify ``token`` and return its age in seconds (for the signup form's fill time)."""
    serializer = _serializer(purpose)
    try:
        _, signed_at = serializer.loads(token, max_age=max_age(purpose), return_timestamp=True)
    except SignatureExpired as exc:
        raise TokenExpired("this form has expired", None) from exc
    except BadSignature as exc:
        raise TokenInvalid("this form is not valid") from exc
    age: float = (utcnow() - signed_at).total_seconds()
    return age


def _checked(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise TokenInvalid("this link is not valid")
    return payload


def seal(purpose: Purpose, payload: dict[str, Any]) -> str:
    """A URL-safe token whose ``payload`` only this service can read (or has made).

    For the one payload that is not an opaque id: a reader's address on its way to the
    signup answer's page, which may pass through a URL and so through access logs.
    """
    return _sealer(purpose).encrypt(_JSON.encode(payload).encode("utf-8")).decode("ascii")


def unseal(purpose: Purpose, token: str) -> dict[str, Any]:
    """The payload of a ``seal`` token no older than the purpose's max age, or TokenInvalid."""
    age = max_age(purpose)
    try:
        data = _sealer(purpose).decrypt(token.encode("ascii"), ttl=age)
        payload = json.loads(data)
    except (InvalidToken, UnicodeError, ValueError) as exc:
        raise TokenInvalid("this link is not valid") from exc
    return _checked(payload)


def _sealer(purpose: Purpose) -> MultiFernet:
    config = current_app.config
    return _cached_sealer((*config["SECRET_KEY_FALLBACKS"], config["SECRET_KEY"]), purpose)


@lru_cache(maxsize=16)
def _cached_sealer(keys: tuple[str, ...], purpose: Purpose) -> MultiFernet:
    # A key of its own per secret and purpose; the newest secret seals, every one opens.
    def fernet(secret: str) -> Fernet:
        derived = hmac.digest(
            secret.encode("utf-8"), f"newsletter.sealed.{purpose.value}".encode(), hashlib.sha256
        )
        return Fernet(base64.urlsafe_b64encode(derived))

    return MultiFernet([fernet(secret) for secret in reversed(keys)])
