"""Signing operators in and out, and what every console view checks first."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Flask, abort, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from werkzeug.wrappers import Response

from newsletter.db.models import Operator, Role
from newsletter.extensions import client_ip, db
from newsletter.operators import accounts, audit
from newsletter.web.admin import bp
from newsletter.web.admin.forms import SignInForm

login_manager = LoginManager()
login_manager.login_view = "admin.sign_in"
login_manager.login_message = "Please sign in to use the console."

View = TypeVar("View", bound=Callable[..., Any])


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

        return cast(View, guarded)

    return decorate


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Response | tuple[str, int]:
    form = SignInForm()
    if request.method == "POST" and form.validate():
        found = accounts.authenticate(form.email.data or "", form.password.data or "")
        if found is not None:
            audit.record(audit.Actor(f"operator:{found.email}", client_ip()), "sign_in")
            db.session.commit()
            login_user(SignedIn(found))
            return redirect(url_for("admin.dashboard"))
        db.session.rollback()
        # The same words for an unknown account and a wrong password.
        form.password.errors = ["That email and password do not match an account."]
        return render_template("admin/sign_in.html", form=form), 401
    return render_template("admin/sign_in.html", form=form), 200


@bp.post("/sign-out")
@require()
def sign_out() -> Response:
    audit.record(actor(), "sign_out")
    db.session.commit()
    logout_user()
    return redirect(url_for("admin.sign_in"))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
