"""The catalogs: every reader-facing string of the sources is in them, translated in every
shipped language with its placeholders and markup intact, and compiled as committed.

A new string fails here until ``make translations`` has brought it into the catalogs, a
translator has filled it in, and ``make compile-translations`` has compiled it.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = ROOT / "newsletter" / "translations"
TEMPLATE = CATALOGS / "messages.pot"
TRANSLATED = ("de", "ar")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|%[sd]")
TAG = re.compile(r"</?([a-zA-Z][a-zA-Z0-9]*)\b")


def catalog(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def entries(found: Catalog) -> dict[object, Message]:
    return {message.id: message for message in found if message.id}


def placeholders(text: str) -> list[str]:
    return sorted(match.group(0) for match in PLACEHOLDER.finditer(text))


def tags(text: str) -> list[str]:
    return sorted(TAG.findall(text))


def extracted(tmp_path: Path) -> Catalog:
    """The catalog template as ``make translations`` extracts it from today's sources."""
    output = tmp_path / "messages.pot"
    CommandLineInterface().run(
        [
            "pybabel",
            "--quiet",
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "-o",
            str(output),
            str(ROOT),
        ]
    )
    return catalog(output)


def test_the_template_holds_every_string_of_the_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # babel.cfg's patterns are relative to the tree
    now = set(entries(extracted(tmp_path)))
    committed = set(entries(catalog(TEMPLATE)))
    assert now, "nothing extracted: is babel.cfg read?"
    assert not now - committed, (
        f"run make translations; new strings: {sorted(map(str, now - committed))}"
    )
    assert not committed - now, f"run make translations; gone: {sorted(map(str, committed - now))}"


def test_the_operators_console_is_not_in_the_catalog() -> None:
    # The console and the API stay in English; their strings would only burden translators.
    for message in catalog(TEMPLATE):
        assert not any("admin" in path for path, _ in message.locations), message.id


@pytest.mark.parametrize("language", ["en", *TRANSLATED])
def test_each_catalog_has_exactly_the_templates_strings(language: str) -> None:
    wanted = set(entries(catalog(TEMPLATE)))
    have = set(entries(catalog(CATALOGS / language / "LC_MESSAGES" / "messages.po", language)))
    assert have == wanted, "run make translations"


def problems(found: Catalog) -> list[str]:
    """What keeps a catalog from saying every string: missing, fuzzy, or with placeholders or
    markup that are not the original's."""
    wrong = []
    for message in entries(found).values():
        if message.fuzzy:
            wrong.append(f"fuzzy: {message.id!r}")
        if message.pluralizable:
            singular, plural = message.id
            forms = message.string if isinstance(message.string, tuple) else (message.string,)
            if len(forms) != found.num_plurals or not all(forms):
                wrong.append(f"not every plural form translated: {singular!r}")
                continue
            # A form for one or two of a thing may say it in words ("يومين") without the number.
            needed = {p for p in placeholders(plural) if p != "%(count)s"}
            for form in forms:
                have = set(placeholders(form))
                if not needed <= have <= set(placeholders(plural)):
                    wrong.append(f"placeholders differ: {singular!r} -> {form!r}")
                if tags(form) != tags(plural):
                    wrong.append(f"markup differs: {singular!r} -> {form!r}")
            continue
        if not message.string or not message.string.strip():
            wrong.append(f"untranslated: {message.id!r}")
            continue
        if placeholders(message.string) != placeholders(message.id):
            wrong.append(f"placeholders differ: {message.id!r} -> {message.string!r}")
        if tags(message.string) != tags(message.id):
            wrong.append(f"markup differs: {message.id!r} -> {message.string!r}")
    return wrong


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_string_is_translated_with_its_placeholders_and_markup(language: str) -> None:
    found = catalog(CATALOGS / language / "LC_MESSAGES" / "messages.po", language)
    assert len(entries(found)) > 100
    assert not problems(found), "\n".join(problems(found))


def test_a_string_left_untranslated_or_broken_is_caught() -> None:
    found = catalog(CATALOGS / "de" / "LC_MESSAGES" / "messages.po", "de")
    found.add("A sentence added since", "")
    found.add("Goodbye from %(site)s", "Tschüss von %(name)s")
    found.add("You typed <strong>%(email)s</strong>.", "Sie tippten %(email)s.")
    found.add(("%(count)s day", "%(count)s days"), ("%(count)s Tag", ""))
    assert set(problems(found)) == {
        "placeholders differ: 'Goodbye from %(site)s' -> 'Tschüss von %(name)s'",
        "markup differs: 'You typed <strong>%(email)s</strong>.' -> 'Sie tippten %(email)s.'",
        "untranslated: 'A sentence added since'",
        "not every plural form translated: '%(count)s day'",
    }


@pytest.mark.parametrize("language", ["en", *TRANSLATED])
def test_the_compiled_catalog_is_the_committed_one(language: str) -> None:
    folder = CATALOGS / language / "LC_MESSAGES"
    compiled = io.BytesIO()
    write_mo(compiled, catalog(folder / "messages.po", language))
    assert (folder / "messages.mo").read_bytes() == compiled.getvalue(), (
        "run make compile-translations"
    )
