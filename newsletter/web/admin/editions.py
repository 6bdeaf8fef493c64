"""The console's editions: the list, the next edition's preview, a test to oneself, sending
(or resuming) after a confirmation, and an edition's page that follows its sending.

Sending is ``sending.start``, the call behind the CLI's ``digest send``; resuming an edition
is ``sending.resume``, which takes up that very edition and never plans another; a preview
is ``digests.previews``, behind ``digest preview``. Editors and owners alike may do all of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import (
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_wtf import FlaskForm
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response as BaseResponse
from wtforms import HiddenField, IntegerField, RadioField, SelectMultipleField, widgets
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, InputRequired, NumberRange, Optional

from newsletter.bounces.process import edition_events
from newsletter.clock import utcnow
from newsletter.db.models import EditionState, Frequency
from newsletter.digests import ledger, outcomes, planning, previews, sending
from newsletter.digests.content import load_content
from newsletter.errors import MailError, NotResumable
from newsletter.extensions import db
from newsletter.operators import audit
from newsletter.readers import topics
from newsletter.web.admin import bp, params
from newsletter.web.admin.auth import actor, operator, require
from newsletter.web.admin.forms import ActionForm
from newsletter.web.forms import FREQUENCY_CHOICES

PAGE_SIZE = 25
EVENTS = 50  # the newest bounce events an edition's page lists
STATIC = Path(__file__).resolve().parent / "static"
FREQUENCIES = [f.value for f in Frequency]


class CheckboxesField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class EditionChoiceForm(FlaskForm):
    """Which edition to preview or test: a frequency and a set of topics (none: all)."""

    frequency = RadioField(
        "Frequency",
        choices=FREQUENCY_CHOICES,
        default=Frequency.DAILY.value,
        validators=[InputRequired()],
    )
    topics = CheckboxesField("Topics", choices=[])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topics.choices = [SelectChoice(s, name) for s, name in topics.available().items()]

    def chosen(self) -> list[str]:
        return topics.clean(self.topics.data or [])

    def query(self) -> dict[str, Any]:
        """The choice as URL parameters, for the preview's frame and links."""
        return {"frequency": self.frequency.data, "topics": self.topics.data or []}


class SendForm(FlaskForm):
    """Send (or resume) an edition; ``seen`` is the newest edition of that frequency when the
    confirmation was shown, so that a second submit of it sends nothing more."""

    frequency = HiddenField(validators=[InputRequired(), AnyOf(FREQUENCIES)])
    seen = IntegerField(validators=[Optional(), NumberRange(min=0)], default=0)


def _choice_from_args() -> EditionChoiceForm:
    """The GET form of the preview (it changes nothing, so it carries no CSRF token)."""
    form = EditionChoiceForm(formdata=request.args if request.args else None, meta={"csrf": False})
    if request.args:
        form.validate()
    return form


def _me() -> str:
    return operator().email


def _latest_id(frequency: str) -> int:
    latest = planning.latest(frequency)
    return latest.id if latest is not None else 0


@bp.get("/editions")
@require()
def editions() -> tuple[str, int]:
    before = params.position("before", "an edition number")
    found = planning.recent(PAGE_SIZE + 1, before_id=before)
    page, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
    rows = [(edition, outcomes.of(edition.id)) for edition in page]
    return render_template(
        "admin/editions/list.html",
        rows=rows,
        topic_names=topics.available(),
        older=page[-1].id if more else None,
        paged=before is not None,
        unfinished={f: planning.unfinished(f) for f in FREQUENCIES},
    ), 200


@bp.get("/editions/preview")
@require()
def preview() -> tuple[str, int]:
    form = _choice_from_args()
    if form.errors:
        return render_template("admin/editions/preview.html", form=form, content=None), 400
    frequency = str(form.frequency.data)
    now = utcnow()
    articles, readers = planning.preview(frequency, now)
    content = previews.content_of(frequency, articles, now)
    mail = None
    shown_articles = 0
    if content is not None:
        chosen = form.chosen()
        shown_articles = sum(len(s.articles) for s in content.sections(chosen))
        mail = previews.shown(previews.message(content, previews.reader(_me(), "", chosen)))
    return render_template(
        "admin/editions/preview.html",
        form=form,
        content=content,
        mail=mail,
        readers=readers,
        shown_articles=shown_articles,
        send_form=SendForm(),
    ), 200


@bp.get("/editions/preview.html")
@require()
def preview_html() -> tuple[str, int, dict[str, str]]:
    """The preview's HTML part alone, for the preview page's sandboxed frame."""
    form = _choice_from_args()
    if form.errors:
        abort(400)
    content = previews.next_content(str(form.frequency.data))
    if content is None:
        abort(404)
    mail = previews.shown(previews.message(content, previews.reader(_me(), "", form.chosen())))
    return mail.html, 200, {"Content-Type": "text/html; charset=utf-8"}


@bp.post("/editions/preview/test")
@require()
def send_test() -> BaseResponse | tuple[str, int]:
    """Mail the preview to the signed-in operator: a preview Message-ID, no ledger row."""
    form = EditionChoiceForm()
    if not form.validate():
        return render_template("admin/editions/preview.html", form=form, content=None), 400
    frequency = str(form.frequency.data)
    content = previews.next_content(frequency)
    back = url_for("admin.preview", **form.query())
    if content is None:
        flash(f"No new articles for the {frequency} edition: there is nothing to test.", "warning")
        return redirect(back)
    chosen = form.chosen()
    mail = previews.message(content, previews.reader(_me(), "", chosen))
    try:
        previews.send(mail)
    except MailError as exc:
        audit.record(actor(), "edition.test", frequency, topics=chosen, error=str(exc)[:300])
        db.session.commit()
        flash(f"The test could not be sent: {exc}", "error")
        return redirect(back)
    audit.record(actor(), "edition.test", frequency, topics=chosen, to=_me())
    db.session.commit()
    flash(f"A test of the {frequency} edition was sent to {_me()}.", "notice")
    return redirect(back)


@bp.get("/editions/send")
@require()
def confirm_send() -> tuple[str, int]:
    frequency = request.args.get("frequency", Frequency.DAILY.value)
    if frequency not in FREQUENCIES:
        return render_template(
            "admin/editions/confirm.html",
            frequency=None,
            error=f"frequency: must be one of {', '.join(FREQUENCIES)}",
        ), 400
    return _confirm_page(frequency), 200


def _confirm_page(frequency: str) -> str:
    unfinished = planning.unfinished(frequency)
    articles: list[Any] = []
    readers = 0
    if unfinished is None:
        articles, readers = planning.preview(frequency, utcnow())
    form = SendForm(frequency=frequency, seen=_latest_id(frequency))
    return render_template(
        "admin/editions/confirm.html",
        frequency=frequency,
        unfinished=unfinished,
        progress=outcomes.of(unfinished.id) if unfinished is not None else None,
        articles=articles,
        readers=readers,
        form=form,
        resume=ActionForm(),
    )


@bp.post("/editions/send")
@require()
def send() -> BaseResponse | tuple[str, int]:
    form = SendForm()
    if not form.validate():
        fields = ", ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
        return render_template("admin/editions/confirm.html", frequency=None, error=fields), 400
    frequency = str(form.frequency.data)
    latest = planning.latest(frequency)
    if latest is not None and latest.id > (form.seen.data or 0):
        # This confirmation was acted on already (a second click), or another operator or
        # the schedule started an edition since it was shown: nothing more is sent.
        flash(
            f"Edition {latest.id} was started after that confirmation was shown; "
            "nothing more was sent.",
            "warning",
        )
        return redirect(url_for("admin.edition", edition_id=latest.id))
    started = sending.start(frequency)
    if started is None:
        flash(f"No new articles since the last {frequency} edition: nothing was sent.", "warning")
        return redirect(url_for("admin.confirm_send", frequency=frequency))
    action = "edition.resume" if started.resumed else "edition.send"
    audit.record(
        actor(),
        action,
        f"edition:{started.edition_id}",
        frequency=frequency,
        readers=started.readers,
    )
    db.session.commit()
    if started.resumed:
        flash(
            f"Edition {started.edition_id} resumed: {started.requeued:,} queued again, "
            f"{started.unknown:,} marked unknown.",
            "notice",
        )
    else:
        flash(
            f"Edition {started.edition_id} is being sent to {started.readers:,} readers.", "notice"
        )
    return redirect(url_for("admin.edition", edition_id=started.edition_id))


@bp.post("/editions/<int:edition_id>/resume")
@require()
def resume(edition_id: int) -> BaseResponse:
    """Take up this edition again (its workers stopped, its tasks were lost)."""
    if not ActionForm().validate():
        raise BadRequest("This form had expired. Reload the page and try again.")
    try:
        started = sending.resume(edition_id)
    except NotResumable as exc:
        db.session.rollback()
        if planning.edition(edition_id) is None:
            abort(404)
        flash(f"Nothing was sent: {exc}.", "warning")
        return redirect(url_for("admin.edition", edition_id=edition_id))
    audit.record(
        actor(),
        "edition.resume",
        f"edition:{edition_id}",
        readers=started.readers,
        requeued=started.requeued,
        unknown=started.unknown,
    )
    db.session.commit()
    flash(
        f"Edition {edition_id} resumed: {started.requeued:,} queued again, "
        f"{started.unknown:,} marked unknown.",
        "notice",
    )
    return redirect(url_for("admin.edition", edition_id=edition_id))


@bp.get("/editions/<int:edition_id>")
@require()
def edition(edition_id: int) -> tuple[str, int]:
    found = planning.edition(edition_id)
    if found is None:
        abort(404)
    progress = outcomes.of(found.id)
    sending_now = found.state == EditionState.SENDING
    return render_template(
        "admin/editions/edition.html",
        edition=found,
        content=load_content(found.id),
        progress=progress,
        sending_now=sending_now,
        reasons=ledger.reasons(found.id),
        events=edition_events(found.id, EVENTS),
        event_limit=EVENTS,
        topic_names=topics.available(),
        resume=ActionForm() if sending_now else None,
    ), 200


@bp.get("/editions/<int:edition_id>/progress.json")
@require()
def progress(edition_id: int) -> Response:
    found = planning.edition(edition_id)
    if found is None:
        abort(404)
    figures = outcomes.of(found.id)
    response = jsonify(
        edition=found.id,
        state=found.state,
        total=figures.total,
        finished=figures.finished,
        counts=figures.states,
        bounces=figures.bounces,
        shown=figures.shown(),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/editions/progress.js")
@require()
def progress_script() -> Response:
    """The console's one script: it keeps a sending edition's figures up to date."""
    return send_from_directory(STATIC, "progress.js", mimetype="text/javascript", max_age=300)
