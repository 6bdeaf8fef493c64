"""The owner's view of the effective settings, read-only, with every secret masked."""

from __future__ import annotations

from flask import current_app, render_template

from newsletter import config
from newsletter.db.models import Role
from newsletter.web.admin import bp
from newsletter.web.admin.auth import require


@bp.get("/settings")
@require(Role.OWNER)
def settings() -> str:
    return render_template("admin/settings.html", settings=config.effective(current_app))
