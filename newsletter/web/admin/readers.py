"""Readers in the console: search, one reader's page, and the owner's export and erasure."""

from __future__ import annotations

import json
import re

from flask import Response, abort, flash, redirect, render_template, request, url_for
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response as BaseResponse

from newsletter import cursors
from newsletter.bounces import log as bounce_log
from newsletter.db.models import Role, Subscriber
from newsletter.digests import ledger
from newsletter.errors import InvalidCursor
from newsletter.extensions import db
from newsletter.operators import audit
from newsletter.readers import consent, directory, privacy, suppression, topics
from newsletter.readers.consent import Origin
from newsletter.readers.subscriptions import by_uid
from newsletter.web.admin import bp, params
from newsletter.web.admin.auth import actor, operator, require
from newsletter.web.admin.forms import ActionForm, EraseForm

DELIVERIES_SHOWN = 50


# What a reader's opaque id can be (``new_uid``); anything else is no reader's.
_UID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _reader(uid: str) -> Subscriber:
    # Checked before the query: a NUL or other control character would fail there
    # (PostgreSQL refuses NUL in text).
    found = by_uid(uid) if _UID.fullmatch(uid) else None
    if found is None:
        abort(404, "There is no reader here: the link is wrong, or the reader was erased.")
    return found


@bp.get("/readers")
@require()
def readers() -> str:
    term = params.text("q", directory.MAX_TERM)
    after = params.text("after", cursors.MAX_LENGTH) or None
    try:
        page = directory.search(term, after)
    except InvalidCursor as exc:
        raise BadRequest(f"after: {exc}") from None
    return render_template("admin/readers.html", term=term.strip(), page=page, after=after)


@bp.get("/readers/<uid>")
@require()
def reader(uid: str) -> str:
    subscriber = _reader(uid)
    before = params.position("before", "an edition number")
    deliveries = ledger.of_reader(subscriber.id, before, DELIVERIES_SHOWN + 1)
    names = topics.available()
    chosen = subscriber.topics
    # In the site's own order, as the preferences page lists them; retired ones last.
    shown = [name for slug, name in names.items() if slug in chosen]
    shown += [slug for slug in chosen if slug not in names]
    return render_template(
        "admin/reader.html",
        reader=subscriber,
        topic_names=shown,
        history=consent.history(subscriber.id),
        deliveries=deliveries[:DELIVERIES_SHOWN],
        older=deliveries[DELIVERIES_SHOWN - 1].edition_id
        if len(deliveries) > DELIVERIES_SHOWN
        else None,
        bounces=bounce_log.recent(limit=20, subscriber_id=subscriber.id),
        suppressed=suppression.lookup(subscriber.email),
        action=ActionForm(),
    )


@bp.post("/readers/<uid>/export")
@require(Role.OWNER)
def reader_export(uid: str) -> Response:
    subscriber = _reader(uid)
    if not ActionForm().validate():
        raise BadRequest("This form had expired. Reload the page and try again.")
    held = privacy.export_data(subscriber.email)
    audit.record(actor(), "reader.export", f"reader:{subscriber.uid}")
    db.session.commit()
    body = json.dumps(held, indent=2, ensure_ascii=False) + "\n"
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="reader-{subscriber.uid}.json"'},
    )


@bp.route("/readers/<uid>/erase", methods=["GET", "POST"])
@require(Role.OWNER)
def reader_erase(uid: str) -> BaseResponse | tuple[str, int]:
    subscriber = _reader(uid)
    form = EraseForm()
    if request.method == "POST" and form.validate():
        if (form.confirm.data or "").strip().lower() != subscriber.email:
            form.confirm.errors = ["That is not this reader's address; nothing was erased."]
        else:
            who = operator().email
            origin = Origin(source=f"console:{who}"[:120])
            erasure = privacy.erase(subscriber.email, origin, by=who)
            audit.record(actor(), "reader.erase", f"reader:{uid}", removed=erasure.removed)
            db.session.commit()
            flash(
                "The reader's data was erased. Their address stays suppressed, kept only as "
                "a hash, so no import can mail it again.",
                "notice",
            )
            return redirect(url_for("admin.readers"), 303)
    status = 400 if request.method == "POST" else 200
    return render_template("admin/erase.html", reader=subscriber, form=form), status
