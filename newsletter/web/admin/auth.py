"""Signing operators in and out, and what every console view checks first.

Sign-in attempts are limited per IP and per typed address (known or not), and a failed
one gives the same page and status whatever was wrong. A session ends at sign-out (with
every other session of the account), after ADMIN_IDLE_MINUTES without a request, and when
the account's password changes or the account is removed (its session key changes). The
session cookie is HttpOnly and SameSite=Lax always, and Secure whenever BASE_URL is https
(``config.load``).
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

from flask import (
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from werkzeug.wrappers import Response

from newsletter.db.models import Operator, Role
from newsletter.errors import InvalidAddress
from newsletter.extensions import client_ip, db, limiter
from newsletter.operators import accounts, audit
from newsletter.readers.addresses import normalize
from newsletter.web.admin import bp
from newsletter.web.admin.forms import SignInForm

login_manager = LoginManager()
login_manager.login_view = "admin.sign_in"
login_manager.login_message = "Please sign in to use the console."

View = TypeVar("View", bound=Callable[..., Any])

# Where a view says who may call it (read by the authorization tests for every route).
ACCESS = "console_access"
SEEN = "admin_seen"  # the session's last request, in seconds since the epoch
MISS = "That email and password do not match an account."


class SignedIn(UserMixin):
    """The operator behind the session. The session holds ``id:session_key``: a new
    password or a removed account changes the key, and every older session ends."""

    def __init__(self, operator: Operator) -> None:
        self.operator_id = operator.id
        self.email = operator.email
        self.role = operator.role
        self._session_key = operator.session_key

    def get_id(self) -> str:
        return f"{self.operator_id}:{self._session_key}"

    @property
    def is_owner(self) -> bool:
        return bool(self.role == Role.OWNER)


@login_manager.user_loader
def _load(user_id: str) -> SignedIn | None:
    number, _, key = user_id.partition(":")
    if not number.isdigit():
        return None
    operator = accounts.by_id(int(number))
    if operator is None or operator.disabled_at is not None or operator.session_key != key:
        return None
    return SignedIn(operator)


def operator() -> SignedIn:
    """The signed-in operator (only inside a view guarded by ``require``)."""
    return cast(SignedIn, current_user._get_current_object())


def actor() -> audit.Actor:
    """The signed-in operator as the audit log names them."""
    return audit.Actor(f"operator:{operator().email}", client_ip())


def require(role: Role | None = None) -> Callable[[View], View]:
    """Refuse anonymous callers (to the sign-in page) and, with ``role``, other roles (403)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if role is not None and operator().role != role:
                abort(403)
            return view(*args, **kwargs)

        setattr(guarded, ACCESS, role.value if role is not None else "signed-in")
        return cast(View, guarded)

    return decorate


def public(view: View) -> View:
    """Mark a console view anybody may open (the sign-in page)."""
    setattr(view, ACCESS, "public")
    return view


def safe_next(value: str | None) -> str | None:
    """``value`` when it is a console path of this site, else None (no open redirect)."""
    if not value or len(value) > 2000 or "\\" in value:
        return None
    if any(not ch.isprintable() or ch.isspace() for ch in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    # "/admin/../x" and "/admin/./../x" leave the console once a browser resolves them, and
    # so does "/admin/%2e%2e/x": browsers read a percent-encoded dot as a dot there.
    path = posixpath.normpath(unquote(parts.path))
    if path != "/admin" and not path.startswith("/admin/"):
        return None
    return value


def _idle_seconds() -> float:
    return float(current_app.config["ADMIN_IDLE_MINUTES"]) * 60


@bp.before_request
def _end_idle_sessions() -> Response | None:
    """Sign out a session that has been idle too long; note every other request's time."""
    if not current_user.is_authenticated:
        return None
    now = int(time.time())
    seen = session.get(SEEN)
    if isinstance(seen, int) and now - seen > _idle_seconds():
        logout_user()
        session.pop(SEEN, None)
        minutes = current_app.config["ADMIN_IDLE_MINUTES"]
        flash(f"You were signed out after {minutes} minutes without activity.", "notice")
        target = safe_next(request.full_path.rstrip("?") if request.method == "GET" else None)
        return redirect(url_for("admin.sign_in", next=target))
    session[SEEN] = now
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    # Console pages show readers' personal data: no cache keeps them, and a shared one
    # never answers one operator with another's page.
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Cookie")
    return response


def _typed_account() -> str:
    """The address a sign-in attempt names, as the per-account limit counts it."""
    return "account:" + request.form.get("email", "").strip().lower()[:320]


NOT_AN_ADDRESS = "(not an address)"


def _typed_address(form: SignInForm) -> str:
    """What the audit log keeps of a failed sign-in's email box: the address, if it is one.

    Anything else may be a password typed in the wrong box (or a NUL, which PostgreSQL
    would refuse): a log nobody can clean must not keep it.
    """
    try:
        return normalize(form.email.data or "")
    except InvalidAddress:
        return NOT_AN_ADDRESS


def _failed(response: Response) -> bool:
    """Only failed attempts count towards the limits."""
    return response.status_code == 401


def _ip_limit() -> str:
    return str(current_app.config["RATELIMIT_SIGN_IN"])


def account_limit() -> str:
    """Wrong passwords one account may be tried with (signing in, or asked again)."""
    return str(current_app.config["RATELIMIT_SIGN_IN_ACCOUNT"])


@bp.route("/sign-in", methods=["GET", "POST"])
@limiter.limit(_ip_limit, methods=["POST"], deduct_when=_failed)
@limiter.limit(account_limit, key_func=_typed_account, methods=["POST"], deduct_when=_failed)
@public
def sign_in() -> Response | tuple[str, int]:
    target = safe_next(request.args.get("next"))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(target or url_for("admin.dashboard"))
    form = SignInForm()
    if request.method == "POST" and form.validate():
        found = accounts.authenticate(form.email.data or "", form.password.data or "")
        if found is not None:
            audit.record(audit.Actor(f"operator:{found.email}", client_ip()), "sign_in")
            db.session.commit()
            # A fresh session: nothing from before signing in is carried into it.
            session.clear()
            login_user(SignedIn(found))
            session[SEEN] = int(time.time())
            return redirect(target or url_for("admin.dashboard"), 303)
        db.session.rollback()
        # Recorded whether or not the account exists, so both take the same work.
        audit.record(audit.Actor("anonymous", client_ip()), "sign_in.failed", _typed_address(form))
        db.session.commit()
        form.password.errors = [MISS]
        return render_template("admin/sign_in.html", form=form, next=target), 401
    status = 400 if request.method == "POST" else 200
    return render_template("admin/sign_in.html", form=form, next=target), status


@bp.post("/sign-out")
@require()
def sign_out() -> Response:
    # The session is a signed cookie: forgetting it here would leave any copy of it (a
    # shared profile, a proxy's log) signed in. A new session key ends them all, on every
    # device of this account.
    me = accounts.by_id(operator().operator_id)
    assert me is not None  # the session was loaded from this very row
    accounts.end_sessions(me)
    audit.record(actor(), "sign_out", sessions="every session of this account ended")
    db.session.commit()
    logout_user()
    session.pop(SEEN, None)
    return redirect(url_for("admin.sign_in"), 303)


def sign_in_again(operator_row: Operator) -> None:
    """Keep this session signed in under the account's new session key (its own password
    change ends every other session, not this one)."""
    login_user(SignedIn(operator_row))
    session[SEEN] = int(time.time())


def init_app(app: Flask) -> None:
    # Flask-Login's own context processor loads the signed-in operator for every template
    # the app renders, the readers' pages included, and on the way marks a reader's session
    # "not fresh": a cookie written, or not, depending on which pages came before. Only the
    # console's templates show the operator, so only they are given ``current_user``.
    login_manager.init_app(app, add_context_processor=False)


@bp.context_processor
def _operator() -> dict[str, Any]:
    return {"current_user": current_user}
