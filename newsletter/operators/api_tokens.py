"""API tokens: created with one scope, shown once, kept hashed, revocable.

The one writer of ``api_token``. A token reads ``nl_<prefix>_<secret>``: the prefix tells an
operator which token a log line is about without revealing the secret.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from newsletter.clock import utcnow
from newsletter.db.models import ApiToken, Scope
from newsletter.errors import OperatorError
from newsletter.extensions import db

NAME_LENGTH = 100


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create(name: str, scope: str) -> tuple[ApiToken, str]:
    """A new token (in the caller's transaction) and its secret, which is never stored."""
    name = name.strip()
    if not name or len(name) > NAME_LENGTH or not name.isprintable():
        raise OperatorError(f"the name must be 1 to {NAME_LENGTH} printable characters")
    if scope not in list(Scope):
        raise OperatorError(f"the scope must be one of {', '.join(Scope)}")
    prefix = secrets.token_hex(4)
    secret = f"nl_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken(name=name, scope=scope, secret_hash=_digest(secret), prefix=prefix)
    db.session.add(token)
    db.session.flush()
    return token, secret


def verify(secret: str) -> ApiToken | None:
    """The live token with this secret, or None (unknown, malformed or revoked)."""
    if not secret.startswith("nl_") or len(secret) > 200:
        return None
    token: ApiToken | None = db.session.scalar(
        select(ApiToken).where(ApiToken.secret_hash == _digest(secret))
    )
    if token is None or token.revoked_at is not None:
        return None
    return token


def touch(token: ApiToken) -> None:
    """Note the token's use, at most once a minute (a busy CMS would write on every call)."""
    now = utcnow()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        token.last_used_at = now


def revoke(token_id: int) -> ApiToken:
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise OperatorError(f"there is no API token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token


def listing() -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.id)))
