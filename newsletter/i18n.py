"""Readers' languages: which the site offers, which one a page or a mail speaks, and how
dates and directions follow it. The strings themselves go through Flask-Babel's catalogs
under ``newsletter/translations``.

A page reached through a reader's signed link speaks the reader's language; any other
page the one its ``?lang=`` names, else the best of the browser's Accept-Language, else
the site's first language. Every mail to a reader is rendered in theirs (``speaking``).
The operator's console and the API stay in the language the code is written in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, get_day_names
from flask import Flask, current_app, g, has_request_context, request
from flask_babel import force_locale, get_locale, gettext, refresh

# The language the templates and the code are written in: it needs no catalog.
SOURCE = "en"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
# Paths whose pages are the publisher's own tools, not the readers'.
UNTRANSLATED = ("/admin", "/api/")
# The site's English dates have always read "04 December 2026"; other languages take the
# long form their readers expect ("4. Dezember 2026").
DATE_PATTERNS = {SOURCE: "dd MMMM y"}


def N_(message: str) -> str:  # the name pybabel looks for
    """Mark a string for the catalog where it is defined; it is translated where it is shown."""
    return message


@cache
def shipped() -> tuple[str, ...]:
    """The languages this package has compiled catalogs for, the source language included."""
    found = {SOURCE}
    if TRANSLATIONS.is_dir():
        found |= {
            folder.name
            for folder in TRANSLATIONS.iterdir()
            if (folder / "LC_MESSAGES" / "messages.mo").is_file()
        }
    return tuple(sorted(found))


def offered() -> list[str]:
    """The site's LANGUAGES, its default first."""
    languages: list[str] = current_app.config["LANGUAGES"]
    return languages


def default() -> str:
    """The site's language: the first of LANGUAGES."""
    return offered()[0]


def several() -> bool:
    """Whether readers have a language to choose."""
    return len(offered()) > 1


def supported(code: object) -> str | None:
    """``code`` as one of the site's languages ("de", "DE", "de-AT" -> "de"), or None."""
    if not isinstance(code, str):
        return None
    languages = offered()
    wanted = code.strip().replace("_", "-").lower()
    for candidate in (wanted, wanted.partition("-")[0]):
        for language in languages:
            if language.lower() == candidate:
                return language
    return None


def reader_language(stored: str | None) -> str:
    """The language a reader is written to: theirs while the site offers it, else the site's."""
    return supported(stored) or default()


def _select() -> str:
    """Flask-Babel's locale selector: the language of the page being answered."""
    if not has_request_context():
        return default()
    chosen: str | None = g.get("page_language")
    if chosen is not None:
        return chosen
    if request.path.startswith(UNTRANSLATED):
        return SOURCE
    asked = supported(request.args.get("lang"))
    if asked is not None:
        return asked
    return request.accept_languages.best_match(offered()) or default()


def use(code: str | None) -> None:
    """Answer this request in a reader's language (for pages reached through their link)."""
    g.page_language = reader_language(code)
    refresh()


def query() -> dict[str, Any]:
    """``lang`` for links and form actions of a page, so the next page speaks as it did."""
    return {"lang": current()} if several() else {}


def current() -> str:
    """The language being spoken now: the page's, or the mail's inside ``speaking``."""
    locale = get_locale()
    return str(locale) if locale is not None else default()


@contextmanager
def speaking(code: str) -> Iterator[None]:
    """Render everything inside (a mail) in ``code``, whatever the page around it speaks."""
    with force_locale(code):
        yield


@cache
def _locale(code: str) -> Locale:
    return Locale.parse(code)


def direction(code: str | None = None) -> str:
    """``rtl`` or ``ltr``: how the language (the current one by default) is written."""
    right_to_left = _locale(code or current()).character_order == "right-to-left"
    return "rtl" if right_to_left else "ltr"


def language_name(code: str) -> str:
    """A language's name in itself, as a reader looks for it ("Deutsch", "العربية")."""
    name = _locale(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


def day(value: date) -> str:
    """A calendar day written the current language's way."""
    language = current()
    return format_date(value, DATE_PATTERNS.get(language, "long"), locale=_locale(language))


def weekday_name(index: int) -> str:
    """The name of a weekday (0 is Monday) in the current language."""
    return str(get_day_names("wide", locale=_locale(current()))[index])


def frequency_name(value: str) -> str:
    """A frequency's word of its own ("Daily", a tag, a choice) in the current language."""
    if value == "daily":
        return str(gettext("Daily"))
    if value == "weekly":
        return str(gettext("Weekly"))
    return value.capitalize()


def init_app(app: Flask) -> None:
    from newsletter.extensions import babel

    app.config["BABEL_DEFAULT_LOCALE"] = app.config["LANGUAGES"][0]
    babel.init_app(app, default_translation_directories=str(TRANSLATIONS), locale_selector=_select)
    # {% trans %} blocks are written wrapped like the text around them; their catalog
    # entries (and pybabel's, see babel.cfg) are one line.
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.add_template_global(current, "page_language")
    app.add_template_global(direction, "text_direction")
    app.add_template_global(language_name)
    app.add_template_global(weekday_name)
    app.add_template_global(query, "language_query")
    app.add_template_filter(frequency_name)
