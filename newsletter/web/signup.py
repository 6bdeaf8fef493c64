"""Signup and double opt-in: the form, the "check your inbox" answer, the confirm page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from limits import parse
from werkzeug.wrappers import Response as BaseResponse

from newsletter import i18n
from newsletter.errors import TokenError, TokenExpired, TokenInvalid
from newsletter.extensions import csrf, db, limiter
from newsletter.i18n import gettext
from newsletter.readers import topics, zones
from newsletter.readers.addresses import address_hash, suggest
from newsletter.readers.consent import Origin, wording
from newsletter.readers.subscriptions import (
    Choices,
    ConfirmLink,
    ConfirmOutcome,
    confirm,
    confirm_link,
    language_of,
    request_signup,
    requested,
    resend_confirmation,
)
from newsletter.tokens import Purpose, load, load_age, seal, sign, unseal
from newsletter.web import pages
from newsletter.web.forms import ConfirmForm, SignupForm

bp = Blueprint("signup", __name__)


def _signup_limit() -> str:
    return str(current_app.config["RATELIMIT_SIGNUP"])


def _resend_limit() -> str:
    return str(current_app.config["RATELIMIT_RESEND"])


def embed_origin() -> str | None:
    """The caller's origin when it is one of the publisher's pages allowed to embed the form."""
    allowed = current_app.config["EMBED_ORIGINS"]
    origin = request.headers.get("Origin")
    if not origin:
        referer = request.headers.get("Referer")
        if referer:
            try:
                parts = urlsplit(referer)
            except ValueError:  # e.g. "http://[oops": a bad header is not a server error
                return None
            origin = f"{parts.scheme}://{parts.netloc}"
    return origin if origin in allowed else None


def _form_page(form: SignupForm, status: int = 200, *, finish: bool = False) -> tuple[str, int]:
    # A reader correcting a mistake has been at this form since it was first shown: keep that
    # start time, or pressing Subscribe again at once would look inhumanly fast (and be dropped).
    if not _start_is_current(form.started.data):
        form.started.data = sign(Purpose.SIGNUP_FORM, {})
    return render_template(
        "subscribe.html", form=form, consent_text=_consent_text(), finish=finish
    ), status


def _finish_here(posted: SignupForm, status: int, *, finish: bool = False) -> tuple[str, int]:
    """Our own form, filled in from a post by a publisher's page that cannot be taken as is.

    That post had no session and no CSRF token (its allow-listed Origin stood in for them),
    so the page shown must carry a token of its own, or the reader's next press of Subscribe,
    now from our own origin, would be refused as an expired form.
    """
    page = SignupForm(formdata=request.form)
    for field in posted:
        page[field.name].errors = list(field.errors)
    return _form_page(page, status, finish=finish)


def _consent_text() -> str:
    """The consent wording in the page's language: what the reader agrees to (and what the
    consent log records, from the same page's language, when the form comes back)."""
    return wording()[1]


def speak_as(uid: str) -> None:
    """Answer in the language of the reader whose link this is (when readers have a choice)."""
    if i18n.several():
        i18n.use(language_of(uid))


def mail_allowed(email: str) -> bool:
    """At most CONFIRM_MAILS_PER_DAY signup mails per address per day (stops list bombing),
    whether they are asked for through this form, a publisher's box or the API."""
    per_day = int(current_app.config["CONFIRM_MAILS_PER_DAY"])
    item = parse(f"{per_day} per day")
    return bool(limiter.limiter.hit(item, "signup-mail", address_hash(email)))


def _start_is_current(started: str | None) -> bool:
    try:
        load_age(Purpose.SIGNUP_FORM, started or "")
    except TokenError:
        return False
    return True


def _form_expired(form: SignupForm) -> bool:
    """A genuine start time older than SIGNUP_FORM_MAX_AGE_HOURS: a tab left open, most likely."""
    if form.website.data:
        return False  # a bot's: answered below like any other signup
    try:
        load_age(Purpose.SIGNUP_FORM, form.started.data or "")
    except TokenExpired:
        return True
    except TokenError:
        return False
    return False


def _looks_automated(form: SignupForm) -> bool:
    if form.website.data:
        return True
    try:
        age = load_age(Purpose.SIGNUP_FORM, form.started.data or "")
    except TokenError:
        return True
    return age < float(current_app.config["SIGNUP_MIN_SECONDS"])


@bp.get("/")
def home() -> BaseResponse:
    # The service has one page to start from; a visitor typing the bare address lands on it.
    return redirect(url_for("signup.subscribe_form"))


# The blank form is the same for every visitor in one language but for its signed start
# time (and the nonce and CSRF token that pages.once fills in itself).
_STARTED = pages.hole("started")


def _blank_form_context() -> dict[str, Any]:
    form = SignupForm(formdata=None)
    form.started.data = _STARTED
    return {"form": form, "consent_text": _consent_text(), "finish": False}


def _blank_form_page() -> str:
    return pages.once(
        "subscribe.html",
        context=_blank_form_context,
        fill={_STARTED: lambda: sign(Purpose.SIGNUP_FORM, {})},
    )


@bp.get("/subscribe")
def subscribe_form() -> tuple[str, int] | tuple[str, int, dict[str, str]]:
    if not request.args.get("correct"):
        return _blank_form_page(), 200
    form = SignupForm()
    # "Did you mean ...?" on the answer page: the form again, with the corrected address,
    # which no cache may keep.
    typed = _answered_address()
    form.email.data = suggest(typed) if typed else None
    return (*_form_page(form), {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@bp.get("/subscribe/embed-token")
def embed_token() -> Response:
    """A signed form start time for signup boxes on the publisher's own pages."""
    response = jsonify(started=sign(Purpose.SIGNUP_FORM, {}))
    origin = request.headers.get("Origin")
    if origin and origin in current_app.config["EMBED_ORIGINS"]:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/subscribe")
@csrf.exempt
@limiter.limit(_signup_limit)
def subscribe() -> tuple[str, int] | BaseResponse:
    embedded = embed_origin()
    # Pages of the publisher post here across sites, with no session cookie; for them the
    # allow-listed Origin stands in for the CSRF token.
    # Form fields only: left to itself Flask-WTF would also read a JSON body, whose lists,
    # numbers and objects these fields are not written for (a 500 rather than a 400).
    form = SignupForm(formdata=request.form, meta={"csrf": embedded is None})
    if not form.validate():
        # Errors (a stale CSRF token included) are shown on a fresh copy of the form.
        return _finish_here(form, 400) if embedded else _form_page(form, 400)
    if not form.started.data and embedded is not None:
        # An embedded box without its script: finish on our own page, nothing lost.
        return _finish_here(form, 200, finish=True)
    if _form_expired(form):
        # Show it again, filled in and with a fresh start time, rather than drop a person's
        # signup as a bot's; nothing is written until it comes back.
        form.started.errors.append(gettext("This form had expired."))
        return _finish_here(form, 400) if embedded else _form_page(form, 400)
    # Over the address's daily limit nothing is written either: a flood of requests for
    # one address must not grow the consent log or rewrite a pending reader's choices.
    # The form's choice, else the page's (a box on a publisher's page passes ?lang=).
    language = (form.language.chosen() or i18n.current()) if i18n.several() else None
    if not _looks_automated(form) and mail_allowed(form.normalized_email):
        request_signup(
            email=form.normalized_email,
            name=form.name.data.strip() if form.name.data else "",
            topics=topics.clean(form.topics.data or []),
            frequency=form.frequency.data,
            origin=Origin.from_request(f"embed:{embedded}" if embedded else "signup-page"),
            language=language,
            timezone=zones.clean(form.timezone.data),
        )
        db.session.commit()  # and with it, the mail goes
    # The same answer for every address and every outcome: nothing here tells whether an
    # address is known, active, over its limit or was taken for a bot. It is a redirect to
    # a page (post/redirect/get), so reloading that page posts nothing and mails nobody.
    # That page repeats the address typed, which travels encrypted: in the session for our
    # own form, in the URL for a publisher's box (whose post carries no cookie of ours).
    # The answer speaks the language the reader chose.
    sealed = seal(Purpose.CHECK_INBOX, {"e": form.normalized_email})
    said: dict[str, Any] = {"lang": language} if language else {}
    if embedded:
        return redirect(url_for("signup.check_inbox", t=sealed, **said), 303)
    session[_ANSWER] = sealed
    return redirect(url_for("signup.check_inbox", **said), 303)


_ANSWER = "check_inbox"


def _answered_address() -> str | None:
    """The address of this browser's last signup answer, while it is fresh."""
    sealed = request.args.get("t") or session.get(_ANSWER)
    if not isinstance(sealed, str):
        return None
    try:
        email = unseal(Purpose.CHECK_INBOX, sealed).get("e")
    except TokenError:
        return None
    return email if isinstance(email, str) else None


@bp.get("/subscribe/check-inbox")
def check_inbox() -> str:
    """The signup answer: check your inbox, at this address (or did you mean another?)."""
    email = _answered_address()
    return render_template(
        "check_inbox.html",
        email=email,
        suggestion=suggest(email) if email else None,
        token=request.args.get("t"),
    )


def _confirm_payload(token: str) -> tuple[str, str, str | None]:
    payload = load(Purpose.CONFIRM, token)
    return _confirm_parts(payload)


def _confirm_parts(payload: dict[str, object]) -> tuple[str, str, str | None]:
    """The reader, the link's nonce and the signup request it answers (older links: none)."""
    uid, nonce, request_key = payload.get("s"), payload.get("n"), payload.get("r")
    if not isinstance(uid, str) or not isinstance(nonce, str):
        raise TokenInvalid("this link is not valid")
    if request_key is not None and not isinstance(request_key, str):
        raise TokenInvalid("this link is not valid")
    return uid, nonce, request_key


def _token_problem(exc: TokenError, token: str) -> tuple[str, int]:
    if isinstance(exc, TokenExpired):
        uid = exc.payload.get("s") if isinstance(exc.payload, dict) else None
        if isinstance(uid, str):
            speak_as(uid)  # a genuine link, only old: it names its reader
        return render_template("confirm_expired.html", token=token), 410
    return render_template(
        "error.html",
        title=gettext("This link is not valid"),
        message=gettext(
            "The link may have been cut short when it was copied. "
            "Open it again from the email, or sign up again."
        ),
        retry_url=url_for("signup.subscribe_form", **i18n.query()),
    ), 400


@bp.get("/confirm/<token>")
def confirm_page(token: str) -> tuple[str, int]:
    # GET changes nothing: link scanners open these links; only the button confirms.
    try:
        uid, nonce, request_key = _confirm_payload(token)
    except TokenError as exc:
        return _token_problem(exc, token)
    state = confirm_link(uid, nonce)
    if state is ConfirmLink.ALREADY:
        return _confirmed_page(uid, already=True), 200
    if state is ConfirmLink.STALE:
        speak_as(uid)
        return _stale_link()
    return _confirm_form_page(token, uid, request_key)


def _confirm_form_page(
    token: str,
    uid: str,
    request_key: str | None,
    form: ConfirmForm | None = None,
    status: int = 200,
) -> tuple[str, int]:
    """The button, above the choices it confirms, filled in and open to correction: anybody
    can type an address into the signup form, so the reader sees what they agree to. It
    speaks the language the request chose, as the mail that led here did."""
    chosen = _speak_as_request(uid, request_key)
    if form is None:
        data = (
            {
                "name": chosen.name,
                "topics": chosen.topics,
                "frequency": chosen.frequency,
                "language": i18n.reader_language(chosen.language),
            }
            if chosen is not None
            else {}
        )
        form = ConfirmForm(formdata=None, data=data, meta={"csrf": False})
    return render_template("confirm.html", token=token, form=form), status


def _speak_as_request(uid: str, request_key: str | None) -> Choices | None:
    """Answer in the language of the signup request a confirmation link answers; its choices."""
    chosen = requested(uid, request_key)
    if chosen is not None and i18n.several():
        i18n.use(chosen.language)
    return chosen


def _stale_link() -> tuple[str, int]:
    return render_template(
        "error.html",
        title=gettext("This link is no longer valid"),
        message=gettext(
            "This confirmation link has been replaced or withdrawn. "
            "Sign up again to get a fresh one."
        ),
        retry_url=url_for("signup.subscribe_form", **i18n.query()),
    ), 410


def _confirmed_page(uid: str, *, already: bool) -> str:
    """You're subscribed (or were already), with the way to change what comes."""
    speak_as(uid)
    preferences_token = sign(Purpose.PREFERENCES, {"s": uid})
    return render_template("confirmed.html", already=already, preferences_token=preferences_token)


@bp.post("/confirm/<token>")
@csrf.exempt
def confirm_post(token: str) -> tuple[str, int]:
    """The confirm button. The signed token is the credential, as for unsubscribing: no
    session or CSRF cookie is needed, so a browser that blocks cookies, or a mail app that
    opened the page in one view and submits from another, still confirms."""
    try:
        uid, nonce, request_key = _confirm_payload(token)
    except TokenError as exc:
        return _token_problem(exc, token)
    chosen: Choices | None = None
    if "frequency" in request.form:
        # The page's fields, as the reader left them (a post without them, from an older
        # page, confirms the request's choices). A mistake is pointed out in the language
        # of the page it was made on.
        _speak_as_request(uid, request_key)
        form = ConfirmForm(formdata=request.form, meta={"csrf": False})
        if not form.validate():
            return _confirm_form_page(token, uid, request_key, form, 400)
        chosen = Choices(
            (form.name.data or "").strip(),
            topics.clean(form.topics.data or []),
            form.frequency.data,
            form.language.chosen() if i18n.several() else None,
        )
    outcome = confirm(uid, nonce, Origin.from_request("confirm-page"), request_key, chosen)
    db.session.commit()  # and with it, the welcome mail goes
    if outcome is ConfirmOutcome.STALE:
        return _stale_link()
    return _confirmed_page(uid, already=outcome is ConfirmOutcome.ALREADY), 200


@bp.post("/confirm/<token>/resend")
@csrf.exempt  # the expired but genuine token is the credential
@limiter.limit(_resend_limit)
def resend(token: str) -> tuple[str, int]:
    """Send a fresh confirmation link in place of an expired one."""
    try:
        uid, _, request_key = _confirm_payload(token)
        return _confirm_form_page(token, uid, request_key)
    except TokenExpired as exc:
        payload = exc.payload if isinstance(exc.payload, dict) else {}
    except TokenError as exc:
        return _token_problem(exc, token)
    try:
        uid, nonce, request_key = _confirm_parts(payload)
    except TokenError as exc:
        return _token_problem(exc, token)
    resend_confirmation(uid, nonce, mail_allowed, request_key)
    db.session.commit()
    speak_as(uid)
    return render_template("check_inbox.html"), 200
