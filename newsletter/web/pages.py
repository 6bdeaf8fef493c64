"""Pages that read the same for every visitor in one language, rendered once.

A page such as the blank signup form or "You're unsubscribed" differs between two answers
only in values fresh for each answer (the style nonce, a CSRF token, a signed start time).
Rendering its template was most of what such an answer cost (bench/web.py: GET /subscribe,
one-click unsubscribe), so it is rendered once per app, template, language and variant, with
a marker in place of each fresh value, and every answer fills the markers in.

While it is rendered, the style nonce and the CSRF token (``csrf_token()``, a form's hidden
field) are markers, so no visitor's own token is kept in the page. Templates rendered this
way, their overrides included, must read nothing else of the request, the session or the
flashed messages. With templates reloaded on change (debug), nothing is kept.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from flask import current_app, g, render_template
from flask_wtf.csrf import generate_csrf

from newsletter import i18n
from newsletter.web.security import NONCE_ON_G, style_nonce

# Private-use characters around a random word: no template text or setting contains it.
_MARK = "\ue000{}-" + secrets.token_hex(8) + "\ue001"
_NONCE = _MARK.format("nonce")
_CSRF = _MARK.format("csrf")
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
    on nothing but the app, the language and ``variant``. ``fill`` maps each further marker
    (``hole``) to the function giving this answer's value, which must need no HTML escaping
    (tokens are URL-safe base64 and dots).
    """
    pages: dict[tuple[Hashable, ...], str] = current_app.extensions.setdefault(_PAGES, {})
    key = (template, i18n.current(), *variant)
    page = pages.get(key)
    if page is None:
        page = _render(template, context)
        if not current_app.jinja_env.auto_reload:
            pages[key] = page
    page = page.replace(_NONCE, style_nonce())
    if _CSRF in page:
        page = page.replace(_CSRF, generate_csrf())
    for marker, value in (fill or {}).items():
        if marker in page:
            page = page.replace(marker, value())
    return page


def _render(template: str, context: Callable[[], Mapping[str, Any]] | None) -> str:
    """The template with markers for this answer's nonce and CSRF token.

    Flask-WTF keeps a request's signed token on ``g`` under the CSRF field's name and hands
    it to every caller (``csrf_token()``, a form's field): a marker put there is what they
    all print, and the visitor's session is left alone.
    """
    token_name = str(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"))
    markers = {NONCE_ON_G: _NONCE, token_name: _CSRF}
    own = {name: g.pop(name) for name in markers if name in g}
    for name, marker in markers.items():
        setattr(g, name, marker)
    try:
        return render_template(template, **(context() if context else {}))
    finally:
        for name in markers:
            g.pop(name, None)
        for name, value in own.items():
            setattr(g, name, value)
