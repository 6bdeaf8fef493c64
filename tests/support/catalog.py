"""The catalog's English, for telling whether any of it shows through a translated page or mail."""

from __future__ import annotations

import html
import re
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

TEMPLATE = Path(__file__).resolve().parents[2] / "newsletter" / "translations" / "messages.pot"
# What stands between the fixed words of a message: placeholders and markup.
_BREAKS = re.compile(r"%\(\w+\)[sd]|<[^>]+>|[|:;,.!?()«»„“]")
_MIN_WORDS = 3


@cache
def english_phrases() -> tuple[str, ...]:
    """Every run of three or more words the catalog's English messages hold as written."""
    with TEMPLATE.open("rb") as handle:
        catalog = read_po(handle)
    phrases: set[str] = set()
    for message in catalog:
        if not message.id:
            continue
        for text in message.id if isinstance(message.id, tuple) else (message.id,):
            for piece in _BREAKS.split(text):
                words = piece.split()
                if len(words) >= _MIN_WORDS:
                    phrases.add(" ".join(words))
    return tuple(sorted(phrases, key=len, reverse=True))


def english_in(text: str) -> list[str]:
    """The catalog's English phrases found in ``text`` (a page's or a mail's words)."""
    words = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())
    return [phrase for phrase in english_phrases() if phrase in words]
