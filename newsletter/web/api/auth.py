"""Who calls the API: a bearer token (``Authorization: Bearer nl_...``) and its one scope.

A token is looked up once per request, before the rate limit (whose budget is the
token's), and every view names the scopes it admits with ``require``. A missing, unknown or
revoked token is a 401, a token of another scope a 403, both with ``WWW-Authenticate`` as
RFC 6750 writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request

from newsletter.db.models import Scope
from newsletter.extensions import client_ip, db
from newsletter.operators import api_tokens, audit
from newsletter.web.api.problems import Problem

View = TypeVar("View", bound=Callable[..., Any])

REALM = "newsletter"
_CALLER = "api_caller"


@dataclass(frozen=True, slots=True)
class Caller:
    """The token behind this request, as plain data."""

    token_id: int
    name: str
    scope: str

    @property
    def source(self) -> str:
        """How the consent and audit logs name it: ``api:NAME#ID``."""
        return f"api:{self.name}#{self.token_id}"

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(self.source, client_ip())


def _presented() -> str | None:
    """The bearer token of the request, if it carries one."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def caller() -> Caller | None:
    """The live token of this request, or None (none given, unknown, malformed, revoked)."""
    if _CALLER in g:
        found: Caller | None = g.get(_CALLER)
        return found
    secret = _presented()
    token = api_tokens.verify(secret) if secret is not None else None
    found = None
    if token is not None:
        found = Caller(token.id, token.name, token.scope)
        api_tokens.touch(token)
        if db.session.is_modified(token):
            db.session.commit()
    setattr(g, _CALLER, found)
    return found


def rate_key() -> str:
    """The rate limit's key: the token's id, so every token has a budget of its own; callers
    without a live token share one per IP."""
    found = caller()
    return f"api-token:{found.token_id}" if found is not None else f"api-anonymous:{client_ip()}"


def current() -> Caller:
    """The caller of a view guarded by ``require``."""
    found = caller()
    assert found is not None, "only inside a view guarded by require()"
    return found


def _challenge(error: str | None = None, scope: str | None = None) -> dict[str, str]:
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if scope:
        parts.append(f'scope="{scope}"')
    return {"WWW-Authenticate": "Bearer " + ", ".join(parts)}


def require(*scopes: Scope) -> Callable[[View], View]:
    """Admit only a live token of one of ``scopes``."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            found = caller()
            if found is None:
                given = _presented() is not None
                raise Problem(
                    401,
                    "This token is not valid: it is unknown or was revoked."
                    if given
                    else "Send a token: Authorization: Bearer nl_...",
                    headers=_challenge("invalid_token" if given else None),
                )
            if found.scope not in scopes:
                wanted = " or ".join(scopes)
                raise Problem(
                    403,
                    f"This token's scope is {found.scope}; this call needs {wanted}.",
                    headers=_challenge("insufficient_scope", " ".join(scopes)),
                )
            return view(*args, **kwargs)

        # Read by the test that keeps the OpenAPI document's scopes in step.
        setattr(guarded, "api_scopes", tuple(scopes))  # noqa: B010
        return cast(View, guarded)

    return decorate
