"""Editions through the API: the next one's preview, sending it, following it, alerts.

Sending is ``digests.sending.start``, as ``newsletter digest send`` and the console's
"Send now": a second call while an edition of that frequency is unfinished
(``planning.unfinished``: with SEND_IN_READER_TIME, one planned on an earlier day of the
site does not count) resumes it rather than planning another, and no reader is mailed twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import jsonify, request, url_for
from flask.typing import ResponseReturnValue

from newsletter.bounces.process import bounce_counts
from newsletter.db.models import BounceKind, DeliveryState, Edition, Frequency, Scope
from newsletter.digests import ledger, planning, previews, sending
from newsletter.digests.alerts import AlertRefused
from newsletter.extensions import db
from newsletter.operators import audit
from newsletter.readers import topics
from newsletter.web.api import bp, pagination
from newsletter.web.api.auth import current, require
from newsletter.web.api.fields import Fields, json_body, pointer
from newsletter.web.api.problems import FieldError, Invalid, Problem

FREQUENCIES = [f.value for f in Frequency]
ID_MAX = 2**31 - 1  # the id columns are 32-bit integers


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def edition_view(edition: Edition) -> dict[str, Any]:
    return {
        "id": edition.id,
        "kind": edition.kind,
        # An alert has no frequency of its own (the column's value is not read for it).
        "frequency": edition.frequency if edition.kind == "digest" else None,
        "topic": edition.topic,
        "state": edition.state,
        "subject": edition.subject,
        "created_at": _iso(edition.created_at),
        "finished_at": _iso(edition.finished_at),
        "url": url_for("api.edition_status", edition_id=edition.id),
    }


@bp.get("/editions")
@require(Scope.READ, Scope.SEND)
def editions() -> ResponseReturnValue:
    """Editions and alerts, newest first, a page at a time."""
    size = pagination.limit()
    before = pagination.decode()
    rows = planning.recent(size + 1, before_id=before)
    return jsonify(pagination.page("api.editions", rows, size, lambda row: row.id, edition_view))


@bp.get("/editions/<int(min=1, max=2147483647):edition_id>")
@require(Scope.READ, Scope.SEND)
def edition_status(edition_id: int) -> ResponseReturnValue:
    """One edition's counts by delivery state, and its bounces and complaints."""
    edition = planning.edition(edition_id)
    if edition is None:
        raise Problem(404, f"There is no edition {edition_id}.")
    counts = ledger.counts(edition.id)
    bounced = bounce_counts(edition.id)
    total = sum(counts.values())
    finished = sum(counts.get(state, 0) for state in ledger.FINISHED)
    return jsonify(
        {
            **edition_view(edition),
            "articles": len(edition.article_rows),
            "readers": total,
            "remaining": total - finished,
            "deliveries": {state.value: counts.get(state, 0) for state in DeliveryState},
            "bounces": {kind.value: bounced.get(kind, 0) for kind in BounceKind},
        }
    )


def _query_frequency() -> str:
    value = request.args.get("frequency", Frequency.DAILY.value)
    if value not in FREQUENCIES:
        raise Invalid(
            [FieldError("frequency", f"must be one of {', '.join(FREQUENCIES)}", in_query=True)]
        )
    return value


def _query_topics() -> list[str] | None:
    chosen = request.args.getlist("topics")
    if not chosen:
        return None
    known = topics.available()
    unknown = [slug for slug in chosen if slug not in known]
    if unknown:
        raise Invalid(
            [
                FieldError(
                    "topics",
                    f"unknown topic {unknown[0][:64]!r} (known: {', '.join(known)})",
                    in_query=True,
                )
            ]
        )
    return chosen


@bp.get("/editions/preview")
@require(Scope.READ, Scope.SEND)
def preview() -> ResponseReturnValue:
    """The next edition of a frequency as a reader of these topics (default: all) would get
    it now; nothing is recorded."""
    frequency = _query_frequency()
    wanted = _query_topics()
    content = previews.next_content(frequency)
    if content is None:
        raise Problem(
            409, f"No new articles since the last {frequency} edition.", name="nothing-new"
        )
    reader = previews.reader(
        "reader@example.com", "Reader", content.topics if wanted is None else wanted
    )
    variant = content.topics & reader.topics
    if not variant:
        raise Problem(
            409,
            f"None of the next {frequency} edition's articles is in these topics.",
            name="nothing-new",
        )
    rendered = previews.shown(previews.message(content, reader))
    _, readers = planning.preview(frequency, content.created_at)
    return jsonify(
        frequency=frequency,
        topics=[slug for slug in topics.available() if slug in variant],
        articles=sum(1 for article in content.articles if article.topic in variant),
        readers=readers,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
    )


def _started(started: sending.Started, kind: str) -> ResponseReturnValue:
    status_url = url_for("api.edition_status", edition_id=started.edition_id)
    body = {
        "edition_id": started.edition_id,
        "kind": kind,
        "readers": started.readers,
        "resumed": started.resumed,
        "url": status_url,
    }
    return jsonify(body), 202, {"Location": status_url}


@bp.post("/editions")
@require(Scope.SEND)
def send() -> ResponseReturnValue:
    """Plan and queue the next edition of a frequency, or resume the unfinished one."""
    fields = Fields(json_body(), ("frequency",))
    frequency = fields.text("frequency", required=True, max_length=16)
    if frequency is not None and frequency not in FREQUENCIES:
        fields.fail("frequency", f"must be one of {', '.join(FREQUENCIES)}")
    fields.done()
    assert frequency is not None
    started = sending.start(frequency)
    if started is None:
        raise Problem(
            409, f"No new articles since the last {frequency} edition.", name="nothing-new"
        )
    audit.record(
        current().actor,
        "edition.resume" if started.resumed else "edition.send",
        f"edition:{started.edition_id}",
        frequency=frequency,
        readers=started.readers,
    )
    db.session.commit()
    return _started(started, "digest")


@bp.post("/alerts")
@require(Scope.SEND)
def alert() -> ResponseReturnValue:
    """Send one article now to the readers of a topic (its own by default), once."""
    fields = Fields(json_body(), ("article_id", "topic"))
    article_id = fields.integer("article_id", required=True, low=1, high=ID_MAX)
    topic = fields.text("topic", nullable=True, max_length=64)
    if topic is not None and topic not in topics.available():
        fields.fail("topic", f"unknown topic (known: {', '.join(topics.available())})")
    fields.done()
    assert article_id is not None
    try:
        started = sending.start_alert(article_id, topic)
    except AlertRefused as exc:
        db.session.rollback()
        if exc.edition_id is not None:
            raise Problem(
                409, _sentence(str(exc)), name="already-sent", edition_id=exc.edition_id
            ) from None
        raise Invalid([FieldError(pointer(exc.field or "article_id"), str(exc))]) from None
    edition = planning.edition(started.edition_id)
    audit.record(
        current().actor,
        "alert.send",
        f"edition:{started.edition_id}",
        article=article_id,
        topic=edition.topic if edition else topic,
        readers=started.readers,
    )
    db.session.commit()
    return _started(started, "alert")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."
