"""An operator's own account: a new password, which ends every other session of theirs."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, url_for
from werkzeug.wrappers import Response

from newsletter.errors import OperatorError
from newsletter.extensions import db, limiter
from newsletter.operators import accounts, audit
from newsletter.web.admin import bp
from newsletter.web.admin.auth import account_limit, actor, operator, require, sign_in_again
from newsletter.web.admin.forms import PasswordForm

_WRONG = "newsletter_wrong_current_password"


def _this_account() -> str:
    return f"operator:{operator().operator_id}"


def _wrong_password(response: Response) -> bool:
    """Only wrong current passwords count towards the limit."""
    return bool(g.get(_WRONG))


@bp.route("/account", methods=["GET", "POST"])
@require()
# The current password protects the account from whoever holds its session: guesses at it
# are limited as sign-ins are, per account.
@limiter.limit(account_limit, key_func=_this_account, methods=["POST"], deduct_when=_wrong_password)
def account() -> Response | tuple[str, int]:
    form = PasswordForm()
    me = accounts.by_id(operator().operator_id)
    assert me is not None  # the session was loaded from this very row
    if form.validate_on_submit():
        if not accounts.check(me, form.current.data or ""):
            setattr(g, _WRONG, True)
            form.current.errors = ["That is not your current password."]
        else:
            try:
                accounts.set_password(me, form.new.data or "")
            except OperatorError as exc:
                db.session.rollback()
                form.new.errors = [f"Not changed: {exc}."]
            else:
                audit.record(actor(), "operator.password", me.email)
                db.session.commit()
                sign_in_again(me)
                flash("Your password is changed; your other sessions have ended.", "notice")
                return redirect(url_for("admin.account"), 303)
    status = 400 if form.is_submitted() else 200
    return render_template("admin/account.html", form=form), status
