"""``newsletter operators`` (console accounts) and ``newsletter api-tokens`` (API tokens)."""

from __future__ import annotations

import secrets

import click
from flask import current_app
from flask.cli import AppGroup

from newsletter.db.models import Role, Scope
from newsletter.errors import OperatorError
from newsletter.extensions import db
from newsletter.operators import accounts, api_tokens, audit

operators = AppGroup("operators", help="Console accounts: add, list, remove, reset a password.")
api_tokens_group = AppGroup("api-tokens", help="API tokens: create (shown once), list, revoke.")


def _fail(exc: OperatorError) -> click.ClickException:
    return click.ClickException(str(exc))


def _sign_in_url() -> str:
    return str(current_app.config["BASE_URL"]).rstrip("/") + "/admin/sign-in"


@operators.command("add")
@click.argument("email")
@click.option(
    "--role", type=click.Choice([r.value for r in Role]), required=True, help="What they may do."
)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help=f"At least {accounts.MIN_PASSWORD} characters (asked for when not given).",
)
def add(email: str, role: str, password: str) -> None:
    """Give someone a console account."""
    try:
        operator = accounts.add(email, role, password)
    except OperatorError as exc:
        raise _fail(exc) from None
    audit.record(audit.Actor.cli(), "operator.add", operator.email, role=role)
    db.session.commit()
    click.echo(f"{operator.email} can sign in as {role} at {_sign_in_url()}")


@operators.command("first-owner")
@click.argument("email")
def first_owner(email: str) -> None:
    """Create an owner with a generated password, unless an owner exists (for `make run`)."""
    if accounts.owners():
        click.echo(f"Console: {_sign_in_url()} (an owner account exists)")
        return
    password = secrets.token_urlsafe(12)
    try:
        operator = accounts.add(email, Role.OWNER, password)
    except OperatorError as exc:
        raise _fail(exc) from None
    audit.record(audit.Actor.cli(), "operator.add", operator.email, role=Role.OWNER.value)
    db.session.commit()
    click.echo(
        f"Console: {_sign_in_url()}\n  email    {operator.email}\n  password {password}\n"
        "(shown once; change it with: newsletter operators password EMAIL)"
    )


@operators.command("list")
def list_operators() -> None:
    """Every account with its role and last sign-in."""
    rows = accounts.listing()
    if not rows:
        click.echo("No console accounts yet. Add one: newsletter operators add EMAIL --role owner")
        return
    for operator in rows:
        last = (
            f"{operator.last_sign_in_at:%Y-%m-%d %H:%M} UTC"
            if operator.last_sign_in_at
            else "never"
        )
        state = "removed" if operator.disabled_at else operator.role
        click.echo(f"{operator.email:<40} {state:<8} last sign-in {last}")


@operators.command("password")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def password(email: str, password: str) -> None:
    """Set a new password; the account's open sessions end."""
    operator = accounts.by_email(email.strip().lower())
    if operator is None:
        raise click.BadParameter(f"no account {email}", param_hint="EMAIL")
    try:
        accounts.set_password(operator, password)
    except OperatorError as exc:
        raise _fail(exc) from None
    audit.record(audit.Actor.cli(), "operator.password", operator.email)
    db.session.commit()
    click.echo(f"New password set for {operator.email}; their open sessions have ended.")


@operators.command("remove")
@click.argument("email")
def remove(email: str) -> None:
    """Close an account (kept in the audit log); its sessions end at once."""
    operator = accounts.by_email(email.strip().lower())
    if operator is None:
        raise click.BadParameter(f"no account {email}", param_hint="EMAIL")
    try:
        accounts.disable(operator)
    except OperatorError as exc:
        raise _fail(exc) from None
    audit.record(audit.Actor.cli(), "operator.remove", operator.email)
    db.session.commit()
    click.echo(f"{operator.email} can no longer sign in.")


@api_tokens_group.command("create")
@click.option("--name", required=True, help="Who uses it, e.g. CMS.")
@click.option(
    "--scope", type=click.Choice([s.value for s in Scope]), required=True, help="What it may do."
)
def create(name: str, scope: str) -> None:
    """Create a token; its secret is printed once and never stored."""
    try:
        token, secret = api_tokens.create(name, scope)
    except OperatorError as exc:
        raise _fail(exc) from None
    audit.record(audit.Actor.cli(), "api_token.create", f"{token.name}#{token.id}", scope=scope)
    db.session.commit()
    click.echo(
        f"Token {token.id} ({token.name}, scope {scope}). Keep it now; it is not shown again:"
    )
    click.echo(secret)


@api_tokens_group.command("list")
def list_tokens() -> None:
    """Every token: id, name, scope, last use, revoked or not (never the secret)."""
    rows = api_tokens.listing()
    if not rows:
        click.echo(
            "No API tokens. Create one: newsletter api-tokens create --name CMS --scope read"
        )
        return
    for token in rows:
        used = f"{token.last_used_at:%Y-%m-%d %H:%M} UTC" if token.last_used_at else "never"
        state = "revoked" if token.revoked_at else "live"
        click.echo(
            f"{token.id:>4}  {token.name:<24} {token.scope:<9} nl_{token.prefix}_…  "
            f"{state:<7} last used {used}"
        )


@api_tokens_group.command("revoke")
@click.argument("token_id", type=int)
def revoke(token_id: int) -> None:
    """Revoke a token: its next call is refused."""
    try:
        token = api_tokens.revoke(token_id)
    except OperatorError as exc:
        raise _fail(exc) from None
    audit.record(audit.Actor.cli(), "api_token.revoke", f"{token.name}#{token.id}")
    db.session.commit()
    click.echo(f"Token {token.id} ({token.name}) is revoked.")
