"""The publisher's console at /admin: server-rendered pages for signed-in operators.

Every view calls the same services the CLI calls; this package only asks, checks the
operator's role, shows, and writes each act to the audit log.
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("admin", __name__, url_prefix="/admin")


def init_app(app: Flask) -> None:
    from newsletter.web.admin import auth, pages  # noqa: F401  (they add views to ``bp``)

    auth.init_app(app)
    app.register_blueprint(bp)
