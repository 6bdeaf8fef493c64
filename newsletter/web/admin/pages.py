"""The console's dashboard: the list by state, its growth and churn, the last editions."""

from __future__ import annotations

from flask import render_template, request
from werkzeug.exceptions import BadRequest

from newsletter.db.models import Status
from newsletter.digests import outcomes, planning
from newsletter.readers import stats
from newsletter.web.admin import bp, charts
from newsletter.web.admin.auth import require

WINDOWS = (30, 90, 365)
EDITIONS_SHOWN = 10


def _window() -> int:
    raw = request.args.get("days", str(WINDOWS[0]))
    if raw not in {str(window) for window in WINDOWS}:
        raise BadRequest(f"days: must be {', '.join(map(str, WINDOWS[:-1]))} or {WINDOWS[-1]}")
    return int(raw)


@bp.get("/")
@require()
def dashboard() -> str:
    days = _window()
    by_status = stats.readers_by_status()
    movement = stats.movement(days, active=by_status[Status.ACTIVE])
    series = charts.buckets(movement)
    editions = outcomes.of_editions(planning.recent(EDITIONS_SHOWN))
    return render_template(
        "admin/dashboard.html",
        days=days,
        windows=WINDOWS,
        by_status=by_status,
        total=sum(by_status.values()),
        movement=movement,
        series=series,
        per_bar=charts.bucket_days(days),
        bars=charts.bars(series),
        line=charts.line(series),
        editions=editions,
    )
