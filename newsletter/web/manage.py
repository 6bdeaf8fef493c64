"""Links every mail carries: unsubscribe (RFC 8058 one-click too) and preferences."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from newsletter import i18n
from newsletter.clock import utcnow
from newsletter.db.models import Subscriber
from newsletter.errors import TokenError, TokenInvalid
from newsletter.extensions import csrf, db
from newsletter.i18n import gettext
from newsletter.readers import topics, zones
from newsletter.readers.consent import Origin
from newsletter.readers.subscriptions import by_uid, receiving, unsubscribe, update_preferences
from newsletter.tokens import Purpose, load, sign
from newsletter.web import pages
from newsletter.web.forms import PreferencesForm
from newsletter.web.signup import speak_as

bp = Blueprint("manage", __name__)


def _uid(purpose: Purpose, token: str) -> str:
    uid = load(purpose, token).get("s")
    if not isinstance(uid, str):
        raise TokenInvalid("this link is not valid")
    return uid


def _invalid_link() -> tuple[str, int]:
    return render_template(
        "error.html",
        title=gettext("This link is not valid"),
        message=gettext(
            "The link may have been cut short when it was copied. "
            "Open it again from the email you received."
        ),
    ), 400


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> tuple[str, int]:
    # GET only shows the button: mail scanners fetch every link they see. A reader who has
    # already left (or been erased) is told so instead: there is nothing to press.
    try:
        uid = _uid(Purpose.UNSUBSCRIBE, token)
    except TokenError:
        return _invalid_link()
    subscriber = by_uid(uid)
    if subscriber is not None and i18n.several():
        i18n.use(subscriber.language)
    if subscriber is None or not receiving(subscriber):
        return render_template("unsubscribed.html", already=True), 200
    return render_template("unsubscribe.html", token=token), 200


@bp.post("/unsubscribe/<token>")
@csrf.exempt
def unsubscribe_post(token: str) -> tuple[str, int]:
    """The page's button and the RFC 8058 one-click POST from mail clients, alike.

    The signed token is the credential, so no cookie or CSRF token is needed, and the
    answer is a 200 page, never a redirect (mail clients do not follow them).
    """
    try:
        uid = _uid(Purpose.UNSUBSCRIBE, token)
    except TokenError:
        return _invalid_link()
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    left = unsubscribe(uid, Origin.from_request("one-click" if one_click else "unsubscribe-page"))
    db.session.commit()
    speak_as(uid)
    already = not left
    return pages.once("unsubscribed.html", (already,), context=lambda: {"already": already}), 200


@bp.route("/preferences/<token>", methods=["GET", "POST"])
@csrf.exempt  # the signed token is the credential: no session or CSRF cookie needed
def preferences(token: str) -> tuple[str, int]:
    try:
        uid = _uid(Purpose.PREFERENCES, token)
    except TokenError:
        return _invalid_link()
    subscriber = by_uid(uid)
    if subscriber is None:
        return _invalid_link()
    if i18n.several():
        i18n.use(subscriber.language)
    if not receiving(subscriber):
        # Nothing is sent to a reader who left, so there is nothing to save; saving would
        # not bring them back either (only a new signup and confirmation do).
        status = 409 if request.method == "POST" else 200
        return render_template("preferences_unsubscribed.html", posted=status == 409), status
    if request.method == "GET":
        form = PreferencesForm(
            formdata=None,
            data={
                "topics": subscriber.topics,
                "frequency": subscriber.frequency,
                "alerts": subscriber.alerts,
                "language": i18n.reader_language(subscriber.language),
                "timezone": subscriber.timezone or "",
            },
            meta={"csrf": False},
        )
    else:
        # Form fields only, never a JSON body.
        form = PreferencesForm(formdata=request.form, meta={"csrf": False})
    saved = False
    if request.method == "POST":
        if not form.validate():
            return _preferences_page(form, subscriber, saved=False), 400
        update_preferences(
            subscriber,
            topics.clean(form.topics.data or []),
            form.frequency.data,
            Origin.from_request("preferences-page"),
            alerts=bool(form.alerts.data) if "alerts_shown" in request.form else None,
            language=form.language.chosen() if i18n.several() else None,
            # A page from before these fields existed leaves alerts and the zone as they
            # were: an unticked box sends nothing, so the page marks that it showed one.
            timezone=(form.timezone.data or "") if "timezone" in request.form else None,
        )
        db.session.commit()
        saved = True
        if i18n.several():
            i18n.use(subscriber.language)  # "Saved", said in the language just chosen
    return _preferences_page(form, subscriber, saved=saved), 200


def _preferences_page(form: PreferencesForm, subscriber: Subscriber, *, saved: bool) -> str:
    unsubscribe_token = sign(Purpose.UNSUBSCRIBE, {"s": subscriber.uid})
    return render_template(
        "preferences.html",
        form=form,
        saved=saved,
        unsubscribe_token=unsubscribe_token,
        zone_groups=zones.grouped(utcnow(), zones.clean(form.timezone.data)),
    )
