"""Forms of the reader's pages."""

from __future__ import annotations

from functools import cache
from typing import Any

from babel import support
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    ValidationError,
    widgets,
)
from wtforms.fields.choices import SelectChoice
from wtforms.i18n import messages_path
from wtforms.validators import DataRequired, InputRequired, Length

from newsletter import i18n
from newsletter.db.models import Frequency
from newsletter.errors import InvalidAddress, InvalidReaderField
from newsletter.i18n import gettext
from newsletter.i18n import lazy_gettext as _l
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
        raise ValidationError(_l("Write this on a single line, without line breaks."))


FREQUENCY_CHOICES = [
    SelectChoice(Frequency.DAILY.value, _l("Daily")),
    SelectChoice(Frequency.WEEKLY.value, _l("Weekly")),
]


class LanguageField(SelectField):
    """The language a reader is written in, among the site's LANGUAGES (the form shows it
    only when there are several). A code the site does not offer is no error: the reader
    gets the page's language (``chosen``), as a topic the site does not have is dropped."""

    def pre_validate(self, form: Any) -> None:
        pass

    def chosen(self) -> str | None:
        return i18n.supported(self.data)


@cache
def _wtforms_messages(language: str) -> support.NullTranslations:
    return support.Translations.load(messages_path(), [language], domain="wtforms")


class ReaderForm(FlaskForm):
    """A form of the reader's pages: WTForms' own messages ("Field cannot be longer than 100
    characters.") in the page's language, from WTForms' catalogs, read once per language."""

    class Meta(FlaskForm.Meta):
        def get_translations(self, form: Any) -> support.NullTranslations:
            return _wtforms_messages(i18n.current())


class ChoicesForm(ReaderForm):
    """Topics and frequency, as the confirm and preferences pages ask for them."""

    topics = TopicsField(_l("Topics"), choices=[])
    frequency = RadioField(
        _l("How often"),
        choices=FREQUENCY_CHOICES,
        default=Frequency.WEEKLY.value,
        validators=[InputRequired()],
    )
    language = LanguageField(_l("Language"), choices=[])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topics.choices = [
            SelectChoice(slug, name) for slug, name in topics.available().items()
        ]
        self.language.choices = [
            SelectChoice(code, i18n.language_name(code)) for code in i18n.offered()
        ]
        if self.language.data is None:
            self.language.data = i18n.current()  # the page's, as Accept-Language or ?lang chose


class ZoneField(StringField):
    """An IANA time zone picked from the page's list (empty: the site's TIMEZONE)."""

    def pre_validate(self, form: Any) -> None:
        if self.data and zones.clean(self.data) is None:
            raise ValidationError(gettext("Choose a time zone from the list."))


class PreferencesForm(ChoicesForm):
    alerts = BooleanField(_l("Breaking-news alerts for my topics, as they happen"))
    timezone = ZoneField(_l("Your time zone"))


class ConfirmForm(ChoicesForm):
    """The confirm page's fields: the request's choices, shown so the reader sees (and may
    correct) what they confirm, whoever typed them."""

    name = StringField(_l("Name"), validators=[Length(max=100), _no_line_breaks])

    def validate_name(self, field: Any) -> None:
        _clean_name(field)


def _clean_name(field: Any) -> None:
    """The rule a stored name follows (roster.clean_name), as a form error."""
    try:
        roster.clean_name(field.data or "")
    except InvalidReaderField as exc:
        if exc.reason == roster.CONTROL_CHARACTERS:
            message = _l("The name contains control characters (line breaks, tabs, ...).")
        else:
            message = _l("The name is longer than %(limit)s characters.", limit=roster.NAME_LENGTH)
        raise ValidationError(message) from exc


class SignupForm(PreferencesForm):
    # Name, topics and frequency are optional at signup: a signup box that only asks for an
    # address gets the weekly digest. A value that is sent must still be a choice.
    frequency = RadioField(
        _l("How often"), choices=FREQUENCY_CHOICES, default=Frequency.WEEKLY.value
    )
    email = EmailField(_l("Email"), validators=[DataRequired(_l("Enter your email address."))])
    name = StringField(_l("Name"), validators=[Length(max=100), _no_line_breaks])
    consent = BooleanField(
        _l("I agree"), validators=[DataRequired(_l("Tick the box to agree to receive our emails."))]
    )
    # Bots fill every field; people never see this one.
    website = StringField(_l("Leave this empty"), validators=[Length(max=200)])
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
            raise ValidationError(_address_problem(exc)) from exc


def _address_problem(exc: InvalidAddress) -> str:
    """Why an address is refused, in the page's language.

    Our own reasons are in the catalog; the validator's detailed ones exist only in
    English, so other languages say that the address is not valid.
    """
    translated = gettext(exc.reason)
    if translated != exc.reason or i18n.current() == i18n.SOURCE:
        return translated
    return gettext("That email address is not valid.")
