"""The owner's page of API tokens: the list, a new token (its secret shown once), revoking."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response

from newsletter.db.models import Role
from newsletter.errors import OperatorError
from newsletter.extensions import db
from newsletter.operators import api_tokens, audit
from newsletter.web.admin import bp
from newsletter.web.admin.auth import actor, require
from newsletter.web.admin.forms import ActionForm, TokenForm


def _page(form: TokenForm, status: int = 200, secret: str | None = None) -> tuple[str, int]:
    return render_template(
        "admin/tokens.html",
        tokens=api_tokens.listing(),
        form=form,
        action=ActionForm(),
        secret=secret,
    ), status


@bp.get("/api-tokens")
@require(Role.OWNER)
def tokens() -> tuple[str, int]:
    return _page(TokenForm(formdata=None))


@bp.post("/api-tokens")
@require(Role.OWNER)
def token_create() -> tuple[str, int]:
    form = TokenForm()
    if not form.validate():
        return _page(form, 400)
    try:
        token, secret = api_tokens.create(form.name.data or "", form.scope.data)
    except OperatorError as exc:
        db.session.rollback()
        form.name.errors = [f"Not created: {exc}."]
        return _page(form, 400)
    audit.record(actor(), "api_token.create", f"{token.name}#{token.id}", scope=token.scope)
    db.session.commit()
    # Shown in this answer only (never stored, and the console answers are never cached).
    return _page(TokenForm(formdata=None), 201, secret)


@bp.post("/api-tokens/<int(max=2147483647):token_id>/revoke")
@require(Role.OWNER)
def token_revoke(token_id: int) -> Response:
    if not ActionForm().validate():
        raise BadRequest("This form had expired. Reload the page and try again.")
    try:
        token = api_tokens.revoke(token_id)
    except OperatorError as exc:
        db.session.rollback()
        flash(f"Nothing changed: {exc}.", "warning")
        return redirect(url_for("admin.tokens"), 303)
    audit.record(actor(), "api_token.revoke", f"{token.name}#{token.id}")
    db.session.commit()
    flash(f"Token {token.name} is revoked: its next call is refused.", "notice")
    return redirect(url_for("admin.tokens"), 303)
