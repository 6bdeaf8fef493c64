"""Forms of the reader's pages."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    RadioField,
    SelectMultipleField,
    StringField,
    ValidationError,
    widgets,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length

from newsletter.db.models import Frequency
from newsletter.errors import InvalidAddress, InvalidReaderField
from newsletter.readers import roster, topics, zones
from newsletter.readers.addresses import normalize


class TopicsField(SelectMultipleField):
    """The topics a reader ticks; none ticked means every topic (``topics.clean``), on
    every form alike, as each form's fieldset says."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()

    def pre_validate(self, form: Any) -> None:
        # Unknown topics are dropped by topics.clean rather than failing the form.
        pass


def _no_line_breaks(form: Any, field: Any) -> None:
    if field.data and any(ch in field.data for ch in "\r\n\0"):
        raise ValidationError("Write this on a single line, without line breaks.")


FREQUENCY_CHOICES = [SelectChoice(f.value, f.value.capitalize()) for f in Frequency]


class ChoicesForm(FlaskForm):
    """Topics and frequency, as the confirm and preferences pages ask for them."""

    topics = TopicsField("Topics", choices=[])
    frequency = RadioField(
        "How often",
        choices=FREQUENCY_CHOICES,
        default=Frequency.WEEKLY.value,
        validators=[InputRequired()],
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topics.choices = [
            SelectChoice(slug, name) for slug, name in topics.available().items()
        ]


class ZoneField(StringField):
    """An IANA time zone picked from the page's list (empty: the site's TIMEZONE)."""

    def pre_validate(self, form: Any) -> None:
        if self.data and zones.clean(self.data) is None:
            raise ValidationError("Choose a time zone from the list.")


class PreferencesForm(ChoicesForm):
    alerts = BooleanField("Breaking-news alerts for my topics, as they happen")
    timezone = ZoneField("Your time zone")


class ConfirmForm(ChoicesForm):
    """The confirm page's fields: the request's choices, shown so the reader sees (and may
    correct) what they confirm, whoever typed them."""

    name = StringField("Name", validators=[Length(max=100), _no_line_breaks])

    def validate_name(self, field: Any) -> None:
        _clean_name(field)


def _clean_name(field: Any) -> None:
    """The rule a stored name follows (roster.clean_name), as a form error."""
    try:
        roster.clean_name(field.data or "")
    except InvalidReaderField as exc:
        raise ValidationError(f"The name {exc.reason}.") from exc


class SignupForm(PreferencesForm):
    # Name, topics and frequency are optional at signup: a signup box that only asks for an
    # address gets the weekly digest. A value that is sent must still be a choice.
    frequency = RadioField("How often", choices=FREQUENCY_CHOICES, default=Frequency.WEEKLY.value)
    email = EmailField("Email", validators=[DataRequired("Enter your email address.")])
    name = StringField("Name", validators=[Length(max=100), _no_line_breaks])
    consent = BooleanField(
        "I agree", validators=[DataRequired("Tick the box to agree to receive our emails.")]
    )
    # Bots fill every field; people never see this one.
    website = StringField("Leave this empty", validators=[Length(max=200)])
    started = HiddenField(validators=[Length(max=200)])
    # Filled in by the page's script from the browser's own zone; anything else (or nothing)
    # means the site's TIMEZONE, never an error (``zones.clean``).
    timezone = HiddenField()

    normalized_email: str = ""

    def validate_name(self, field: Any) -> None:
        _clean_name(field)

    def validate_email(self, field: Any) -> None:
        try:
            self.normalized_email = normalize(field.data or "")
        except InvalidAddress as exc:
            raise ValidationError(exc.reason) from exc
