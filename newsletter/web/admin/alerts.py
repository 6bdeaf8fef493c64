"""The console's breaking-news alerts: pick a recent article and a topic, see how many
readers it would reach, confirm, and ``sending.start_alert`` sends it, once per article and
topic (``alerts.plan`` refuses a second)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import IntegerField, SelectField, ValidationError
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, NumberRange

from newsletter.articles import store
from newsletter.db.models import Article
from newsletter.digests import alerts as alert_service
from newsletter.digests import sending
from newsletter.extensions import db
from newsletter.operators import audit
from newsletter.readers import topics
from newsletter.web.admin import bp
from newsletter.web.admin.auth import actor, require

ID_MAX = 2**31 - 1  # the article ids are 32-bit integers
# How many of the newest articles the page offers.
CHOICES = 30
OWN_TOPIC = ""


class AlertForm(FlaskForm):
    """An article and the topic whose readers get it (empty: the article's own topic)."""

    # At most the largest id the article column holds: a larger one reaches no query.
    article = IntegerField("Article", validators=[InputRequired(), NumberRange(min=1, max=ID_MAX)])
    topic = SelectField("Topic", choices=[], default=OWN_TOPIC)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topic.choices = [
            SelectChoice(OWN_TOPIC, "The article's own topic"),
            *(SelectChoice(slug, name) for slug, name in topics.available().items()),
        ]
        self.found: Article | None = None

    def validate_article(self, field: IntegerField) -> None:
        if field.errors:
            return  # out of range: no query for it
        self.found = store.article(field.data) if field.data is not None else None
        if self.found is None:
            raise ValidationError(f"There is no article {field.data}.")

    def chosen(self) -> tuple[Article, str]:
        """The validated article and the topic's slug."""
        assert self.found is not None
        return self.found, str(self.topic.data or "") or self.found.topic


def _query_form() -> AlertForm:
    """The page's GET form (it changes nothing, so it carries no CSRF token)."""
    return AlertForm(formdata=request.args or None, meta={"csrf": False})


def _page(form: AlertForm, status: int = 200) -> tuple[str, int]:
    return render_template(
        "admin/alerts/index.html",
        form=form,
        recent=store.recent_articles(CHOICES),
        topic_names=topics.available(),
    ), status


@bp.get("/alerts")
@require()
def alerts() -> tuple[str, int]:
    return _page(_query_form())


@bp.get("/alerts/confirm")
@require()
def confirm_alert() -> tuple[str, int]:
    form = _query_form()
    if not form.validate():
        return _page(form, 400)
    article, topic = form.chosen()
    earlier = alert_service.previous(article.id, topic)
    return render_template(
        "admin/alerts/confirm.html",
        article=article,
        topic=topic,
        topic_name=topics.available().get(topic, topic),
        audience=alert_service.audience(topic),
        earlier=earlier,
        form=AlertForm(formdata=None, article=article.id, topic=topic),
    ), 409 if earlier is not None else 200


@bp.post("/alerts")
@require()
def send_alert() -> Response | tuple[str, int]:
    form = AlertForm()
    if not form.validate():
        return _page(form, 400)
    article, topic = form.chosen()
    try:
        started = sending.start_alert(article.id, topic)
    except alert_service.AlertRefused as exc:
        return render_template(
            "admin/alerts/refused.html", reason=str(exc), earlier=exc.edition_id, article=article
        ), 409 if exc.edition_id is not None else 400
    audit.record(
        actor(),
        "alert.send",
        f"edition:{started.edition_id}",
        article=article.id,
        topic=topic,
        readers=started.readers,
    )
    db.session.commit()
    flash(f"The alert is being sent to {started.readers:,} readers.", "notice")
    return redirect(url_for("admin.edition", edition_id=started.edition_id))
