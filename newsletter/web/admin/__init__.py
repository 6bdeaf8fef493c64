"""The publisher's console at /admin: server-rendered pages for signed-in operators.

Every view calls the same services the CLI calls; this package only asks, checks the
operator's role, shows, and writes each act to the audit log.
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("admin", __name__, url_prefix="/admin")


def init_app(app: Flask) -> None:
    # Each module adds its views to ``bp``.
    from newsletter.clock import local_minute
    from newsletter.web.admin import (  # noqa: F401
        account,
        alerts,
        auth,
        bounces,
        editions,
        errors,
        operators,
        pages,
        readers,
        settings,
        tokens,
    )

    app.add_template_filter(local_minute, "local_minute")
    auth.init_app(app)
    app.register_blueprint(bp)
