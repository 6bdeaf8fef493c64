"""The console's pages."""

from __future__ import annotations

from flask import render_template

from newsletter.web.admin import bp
from newsletter.web.admin.auth import require


@bp.get("/")
@require()
def dashboard() -> str:
    return render_template("admin/dashboard.html")
