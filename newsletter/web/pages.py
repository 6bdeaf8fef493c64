"""Pages that read the same for every visitor in one language, rendered once.

A page such as the blank signup form or "You're unsubscribed" differs between two answers
only in values fresh for each answer (the style nonce, a CSRF token, a signed start time).
Rendering its template was most of what such an answer cost (bench/web.py: GET /subscribe,
one-click unsubscribe), so it is rendered once per app, template, language and variant, with
a marker in place of each fresh value, and every answer fills the markers in.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from flask import current_app, g, render_template

from newsletter import i18n
from newsletter.web.security import style_nonce

# Private-use characters around a random word: no template text or setting contains it.
_MARK = "\ue000{}-" + secrets.token_hex(8) + "\ue001"
_NONCE = _MARK.format("nonce")
_PAGES = "newsletter.pages"


def hole(name: str) -> str:
    """A marker to render in place of a value that ``once`` fills in for each answer."""
    return _MARK.format(name)


def once(
    template: str,
    variant: tuple[Hashable, ...] = (),
    *,
    context: Callable[[], Mapping[str, Any]] | None = None,
    fill: Mapping[str, Callable[[], str]] | None = None,
) -> str:
    """``template`` as rendered for this language and ``variant``, its markers filled in.

    ``context`` builds the template's variables on the first rendering; they must depend
    on nothing but the app, the language and ``variant``. ``fill`` maps each marker to the
    function giving this answer's value, which must need no HTML escaping (the tokens and
    nonces are URL-safe base64 and dots).
    """
    pages: dict[tuple[Hashable, ...], str] = current_app.extensions.setdefault(_PAGES, {})
    key = (template, i18n.current(), *variant)
    page = pages.get(key)
    if page is None:
        own = g.pop("style_nonce", None)
        g.style_nonce = _NONCE
        try:
            page = render_template(template, **(context() if context else {}))
        finally:
            g.pop("style_nonce", None)
            if own is not None:
                g.style_nonce = own
        pages[key] = page
    page = page.replace(_NONCE, style_nonce())
    for marker, value in (fill or {}).items():
        if marker in page:
            page = page.replace(marker, value())
    return page
