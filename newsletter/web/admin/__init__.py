"""The publisher's console at /admin: server-rendered pages for signed-in operators.

Every view calls the same services the CLI calls; this package only asks, checks the
operator's role, shows, and writes each act to the audit log.
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("admin", __name__, url_prefix="/admin")


def init_app(app: Flask) -> None:
    # Imported for the views they add to ``bp``.
    from newsletter.web.admin import alerts, auth, editions, pages  # noqa: F401

    auth.init_app(app)
    app.register_blueprint(bp)
