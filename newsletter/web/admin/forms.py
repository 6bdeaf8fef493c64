"""Forms of the console (each carries Flask-WTF's CSRF token)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from newsletter.db.models import Role, Scope
from newsletter.operators.accounts import MAX_PASSWORD, MIN_PASSWORD
from newsletter.operators.api_tokens import NAME_LENGTH

ROLE_CHOICES = [
    SelectChoice(Role.EDITOR.value, "Editor: previews and sends"),
    SelectChoice(Role.OWNER.value, "Owner: also erases, exports, manages operators and settings"),
]
SCOPE_CHOICES = [
    SelectChoice(
        Scope.SUBSCRIBE.value, "subscribe: start a double opt-in, as the signup form does"
    ),
    SelectChoice(Scope.READ.value, "read: look readers and editions up, export a reader's data"),
    SelectChoice(Scope.SEND.value, "send: push articles, send editions and alerts, unsubscribe"),
]


def _one_line(form: Any, field: Any) -> None:
    if field.data and any(not ch.isprintable() for ch in field.data):
        raise ValidationError("Write this on a single line, without control characters.")


class ActionForm(FlaskForm):
    """A button that acts (sign out, export, revoke): the CSRF token and nothing else."""


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])


class EraseForm(FlaskForm):
    """Erasure asks for the address again, typed, so that a slip of the mouse erases nobody."""

    confirm = StringField(
        "Type the address to confirm", validators=[DataRequired(), Length(max=320), _one_line]
    )


class LookupForm(FlaskForm):
    email = StringField(
        "Address", validators=[DataRequired("Enter an address."), Length(max=320), _one_line]
    )


_PASSWORD_LENGTH = Length(
    min=MIN_PASSWORD,
    max=MAX_PASSWORD,
    message=f"The password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters.",
)


class OperatorForm(FlaskForm):
    email = EmailField(
        "Email", validators=[DataRequired("Enter an address."), Length(max=320), _one_line]
    )
    role = RadioField("Role", choices=ROLE_CHOICES, default=Role.EDITOR.value)
    password = PasswordField("Password", validators=[DataRequired(), _PASSWORD_LENGTH])


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=[SelectChoice(role.value, role.value) for role in Role])


class PasswordForm(FlaskForm):
    current = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=MAX_PASSWORD)]
    )
    new = PasswordField("New password", validators=[DataRequired(), _PASSWORD_LENGTH])
    repeat = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("new", message="The two new passwords differ.")],
    )


class TokenForm(FlaskForm):
    name = StringField(
        "Name (who uses it)",
        validators=[DataRequired("Name the token."), Length(max=NAME_LENGTH), _one_line],
    )
    scope = RadioField("Scope", choices=SCOPE_CHOICES, default=Scope.READ.value)
