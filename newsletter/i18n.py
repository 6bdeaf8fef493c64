"""Readers' languages: which the site offers, which one a page or a mail speaks, the
strings said in it (the gettext catalogs under ``newsletter/translations``), and how dates
and directions follow it.

A page reached through a reader's signed link speaks the reader's language (``use``); any
other page the one its ``?lang=`` names, else the best of the browser's Accept-Language,
else the site's first language (Flask-Babel's locale selector, ``_select``). Every mail to a
reader is rendered in theirs (``speaking``). The operator's console and the API stay in the
language the code is written in. Code says ``gettext``, ``lazy_gettext`` (text defined at
import, such as form labels) or ``N_`` from here; templates ``_()`` and ``{% trans %}``.
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
from babel.support import NullTranslations, Translations
from flask import Flask, current_app, g, has_request_context, request
from flask_babel import force_locale, get_locale, refresh
from flask_babel.speaklater import LazyString
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

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
    g.pop(_SPOKEN, None)
    refresh()


def query() -> dict[str, Any]:
    """``lang`` for links and form actions of a page, so the next page speaks as it did."""
    return {"lang": current()} if several() else {}


# Read once per process, by language: Flask-Babel would find a catalog again for every
# string, through three look-ups of the request context; a page holds dozens of strings.
_catalogs: dict[str, NullTranslations] = {}
# The language being spoken, kept on the context once known: ``use`` and ``speaking`` (the
# only ways the language changes) keep it true.
_SPOKEN = "spoken_language"


def current() -> str:
    """The language being spoken now: the page's, or the mail's inside ``speaking``."""
    code: str | None = g.get(_SPOKEN)
    if code is None:
        locale = get_locale()
        code = str(locale) if locale is not None else default()
        setattr(g, _SPOKEN, code)
    return code


def catalog(code: str | None = None) -> NullTranslations:
    """The catalog of a language (by default the one being spoken)."""
    code = code or current()
    found = _catalogs.get(code)
    if found is None:
        found = _catalogs[code] = Translations.load(str(TRANSLATIONS), [code])
    return found


def gettext(message: str, **variables: object) -> str:
    """``message`` in the language being spoken, ``%(name)s`` placeholders filled in."""
    text = str(catalog().ugettext(message))
    return text % variables if variables else text


def ngettext(singular: str, plural: str, count: int, **variables: object) -> str:
    """The form of a message for ``count`` (also its ``%(num)s``) in the language spoken."""
    text = str(catalog().ungettext(singular, plural, count))
    return text % {"num": count, **variables}


def lazy_gettext(message: str, **variables: object) -> LazyString:
    """``gettext`` when shown, for text defined before any language is (form labels)."""
    return LazyString(gettext, message, **variables)


@contextmanager
def speaking(code: str) -> Iterator[None]:
    """Render everything inside (a mail) in ``code``, whatever the page around it speaks."""
    around = g.get(_SPOKEN)
    with force_locale(code):
        setattr(g, _SPOKEN, code)
        try:
            yield
        finally:
            if around is None:
                g.pop(_SPOKEN, None)
            else:
                setattr(g, _SPOKEN, around)


@cache
def _locale(code: str) -> Locale:
    return Locale.parse(code)


def direction(code: str | None = None) -> str:
    """``rtl`` or ``ltr``: how the language (the current one by default) is written."""
    return _direction(code or current())


@cache
def _direction(code: str) -> str:
    return "rtl" if _locale(code).character_order == "right-to-left" else "ltr"


@cache
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
        return gettext("Daily")
    if value == "weekly":
        return gettext("Weekly")
    return value.capitalize()


# Templates find the catalog once per page or mail: each render is given the catalog of the
# language being spoken then (inside ``speaking`` too). And ``_``, ``gettext`` and
# ``ngettext`` are called directly, as Jinja's newstyle gettext behaves (the result marked
# safe under autoescape, placeholders filled in and escaped), rather than through its three
# nested context calls per string, which cost more than the rest of a page's text.
CATALOG = "_catalog"


def _catalog_in(context: Context) -> NullTranslations:
    found: NullTranslations | None = context.get(CATALOG)
    return found if found is not None else catalog()


@pass_context
def _gettext(context: Context, message: str, /, **variables: object) -> str:
    text: str = _catalog_in(context).ugettext(message)
    if context.eval_ctx.autoescape:
        text = Markup(text)
    # (Without placeholders only "%%" would change.)
    return text % variables if variables or "%" in text else text


@pass_context
def _ngettext(
    context: Context, singular: str, plural: str, count: int, /, **variables: object
) -> str:
    variables.setdefault("num", count)
    text: str = _catalog_in(context).ungettext(singular, plural, count)
    if context.eval_ctx.autoescape:
        text = Markup(text)
    return text % variables


def init_app(app: Flask) -> None:
    from newsletter.extensions import babel

    app.config["BABEL_DEFAULT_LOCALE"] = app.config["LANGUAGES"][0]
    babel.init_app(app, default_translation_directories=str(TRANSLATIONS), locale_selector=_select)
    # {% trans %} blocks are written wrapped like the text around them; their catalog
    # entries (and pybabel's, see babel.cfg) are one line.
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.jinja_env.globals.update(_=_gettext, gettext=_gettext, ngettext=_ngettext)
    app.context_processor(lambda: {CATALOG: catalog()})
    # Flask-WTF would read WTForms' catalog file again for every request; the readers' forms
    # take its messages from a copy read once (web.forms.ReaderForm), the console's stay
    # in English.
    app.config["WTF_I18N_ENABLED"] = False
    app.add_template_global(current, "page_language")
    app.add_template_global(direction, "text_direction")
    app.add_template_global(language_name)
    app.add_template_global(weekday_name)
    app.add_template_global(query, "language_query")
    app.add_template_filter(frequency_name)
