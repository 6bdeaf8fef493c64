"""Rendering an email template folder into subject, text and inlined HTML."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import css_inline
from flask import render_template

from newsletter import i18n
from newsletter.mail.message import single_line


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


@cache
def _inliner() -> css_inline.CSSInliner:
    # Mail clients ignore <style> blocks unevenly; inline everything, fetch nothing remote.
    # A <style data-css-inline="keep"> stays as it is written: media queries and the Outlook
    # apps' dark-mode attributes have no element to be inlined into.
    return css_inline.CSSInliner(load_remote_stylesheets=False, keep_style_tags=False)


def inline_css(html: str) -> str:
    return _inliner().inline(html)


def render(name: str, language: str, **context: Any) -> Rendered:
    """Render ``templates/email/<name>/`` in ``language`` with ``context`` (text is not
    autoescaped)."""
    with i18n.speaking(language):
        subject = render_template(f"email/{name}/subject.txt", **context)
        text = render_template(f"email/{name}/body.txt", **context)
        html = render_template(f"email/{name}/body.html", **context)
    return Rendered(subject=single_line(subject), text=text, html=inline_css(html))
