"""The owner's pages for the team: operator accounts and the audit log of every act."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response

from newsletter.db.models import Operator, Role
from newsletter.errors import OperatorError
from newsletter.extensions import db
from newsletter.operators import accounts, audit
from newsletter.web.admin import bp, params
from newsletter.web.admin.auth import actor, operator, require
from newsletter.web.admin.forms import ActionForm, OperatorForm, RoleForm

AUDIT_PAGE = 50


def _account(operator_id: int) -> Operator:
    found = accounts.by_id(operator_id)
    if found is None or found.disabled_at is not None:
        abort(404, "There is no such account, or it was removed.")
    return found


def _page(form: OperatorForm, status: int = 200) -> tuple[str, int]:
    return render_template(
        "admin/operators.html",
        operators=accounts.listing(),
        form=form,
        action=ActionForm(),
        me=operator().operator_id,
    ), status


@bp.get("/operators")
@require(Role.OWNER)
def operators() -> tuple[str, int]:
    return _page(OperatorForm(formdata=None))


@bp.post("/operators")
@require(Role.OWNER)
def operator_add() -> Response | tuple[str, int]:
    form = OperatorForm()
    if not form.validate():
        return _page(form, 400)
    try:
        added = accounts.add(form.email.data or "", form.role.data, form.password.data or "")
    except OperatorError as exc:
        db.session.rollback()
        form.email.errors = [f"Not added: {exc}."]
        return _page(form, 400)
    audit.record(actor(), "operator.add", added.email, role=added.role)
    db.session.commit()
    flash(f"{added.email} can now sign in as {added.role}.", "notice")
    return redirect(url_for("admin.operators"), 303)


def _refused(exc: OperatorError) -> Response:
    db.session.rollback()
    flash(f"Nothing changed: {exc}.", "warning")
    return redirect(url_for("admin.operators"), 303)


@bp.post("/operators/<int(max=2147483647):operator_id>/role")
@require(Role.OWNER)
def operator_role(operator_id: int) -> Response:
    account = _account(operator_id)
    form = RoleForm()
    if not form.validate():
        raise BadRequest("role: must be owner or editor")
    before = account.role
    try:
        accounts.set_role(account, form.role.data or "")
    except OperatorError as exc:
        return _refused(exc)
    if account.role != before:
        audit.record(actor(), "operator.role", account.email, role=account.role, was=before)
        db.session.commit()
        flash(f"{account.email} is now {account.role}.", "notice")
    return redirect(url_for("admin.operators"), 303)


@bp.post("/operators/<int(max=2147483647):operator_id>/remove")
@require(Role.OWNER)
def operator_remove(operator_id: int) -> Response:
    account = _account(operator_id)
    if not ActionForm().validate():
        raise BadRequest("This form had expired. Reload the page and try again.")
    try:
        accounts.disable(account)
    except OperatorError as exc:
        return _refused(exc)
    audit.record(actor(), "operator.remove", account.email)
    db.session.commit()
    flash(f"{account.email} can no longer sign in; their sessions have ended.", "notice")
    # Removing one's own account ends this session too: the next page is the sign-in.
    return redirect(url_for("admin.operators"), 303)


@bp.get("/audit")
@require(Role.OWNER)
def audit_log() -> str:
    before = params.position("before", "an event number")
    events = audit.recent(AUDIT_PAGE + 1, before)
    older = events[AUDIT_PAGE - 1].id if len(events) > AUDIT_PAGE else None
    return render_template(
        "admin/audit.html", events=events[:AUDIT_PAGE], older=older, first_page=before is None
    )
