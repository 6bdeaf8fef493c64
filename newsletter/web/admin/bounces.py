"""The bounce log in the console, and looking up whether an address is suppressed."""

from __future__ import annotations

from datetime import datetime

from flask import render_template

from newsletter.bounces import log as bounce_log
from newsletter.errors import InvalidAddress
from newsletter.readers import suppression
from newsletter.readers.addresses import normalize
from newsletter.web.admin import bp, params
from newsletter.web.admin.auth import require
from newsletter.web.admin.forms import LookupForm


def _page(form: LookupForm, found: tuple[str, datetime] | None = None, looked: str = "") -> str:
    before = params.position("before", "a report number")
    entries = bounce_log.recent(before, bounce_log.PAGE + 1)
    older = entries[bounce_log.PAGE - 1].id if len(entries) > bounce_log.PAGE else None
    return render_template(
        "admin/bounces.html",
        entries=entries[: bounce_log.PAGE],
        older=older,
        first_page=before is None,
        form=form,
        found=found,
        looked=looked,
    )


@bp.get("/bounces")
@require()
def bounces() -> str:
    return _page(LookupForm(formdata=None))


@bp.post("/bounces")
@require()
def suppression_lookup() -> tuple[str, int]:
    """Whether an address is suppressed, why and since when: nothing about any reader. The
    address travels in the body, never in a URL (and so in no access log)."""
    form = LookupForm()
    if not form.validate():
        return _page(form), 400
    try:
        address = normalize(form.email.data or "")
    except InvalidAddress as exc:
        form.email.errors = [exc.reason]
        return _page(form), 400
    return _page(form, suppression.lookup(address), address), 200
