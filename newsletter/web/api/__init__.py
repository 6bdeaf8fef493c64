"""The JSON API at /api/v1, for the publisher's own systems (a CMS, a site's account pages).

Callers present a bearer token made with ``newsletter api-tokens create``; each token has
one scope, and each endpoint names the scopes it admits:

- ``subscribe``: start a double opt-in (``POST /subscriptions``), as the signup form does.
- ``read``: look a reader up and export their data; list, follow and preview editions.
- ``send``: unsubscribe an address, push articles, send editions and alerts; list, follow
  and preview editions (what a sender needs to see what it sent).

The API uses no cookie: it is exempt from CSRF, reads no session and sets none. Its errors
are problem+json (see ``problems``), including those of routing (404, 405) and of the rate
limit, which is per token (API_RATE_LIMIT). The OpenAPI document is at
``/api/v1/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Request, Response, current_app, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from newsletter.extensions import csrf, limiter

PREFIX = "/api/"

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def under_api() -> bool:
    """Whether this request is the API's (by its path: routing errors have no blueprint)."""
    return request.path.startswith(PREFIX)


def _rate_limit() -> str:
    return str(current_app.config["API_RATE_LIMIT"])


class SessionInterface(SecureCookieSessionInterface):
    """The app's session, except under the API: a caller's cookie is not read there (bearer
    tokens are the only credential) and no cookie is ever set."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(PREFIX):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        if request.path.startswith(PREFIX):
            return
        super().save_session(app, session, response)


def init_app(app: Flask) -> None:
    # Imported for the views they add to ``bp``.
    from newsletter.web.api import articles, editions, readers, spec  # noqa: F401

    app.session_interface = SessionInterface()
    app.register_blueprint(bp)


# No cookie authenticates a call, so no cross-site form can make one: CSRF does not apply.
csrf.exempt(bp)


@bp.after_request
def _no_store(response: Response) -> Response:
    # Answers hold readers' data and the state of the moment: no cache keeps them.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


from newsletter.web.api.auth import rate_key  # noqa: E402  (needs ``bp`` defined first)

# One budget per token for all endpoints together (a shared scope, keyed by the token).
limiter.shared_limit(_rate_limit, scope="api", key_func=rate_key)(bp)
