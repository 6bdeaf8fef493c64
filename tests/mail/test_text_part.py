"""The text part's rendering of article HTML, on its own (no app, no database)."""

from __future__ import annotations

from newsletter.mail.text import readable


def test_lists_quotes_and_line_breaks_keep_their_shape() -> None:
    html = (
        "<p>Before<br></p><p>After</p><ol><li>One</li><li><p>Two</p></li><li>Three<br>more</li>"
        "</ol><blockquote><p>Said so</p></blockquote><p>Mail <a href='mailto:desk@ledger.example'>"
        "the desk</a>.</p>"
    )
    assert readable(html) == (
        "Before\n\nAfter\n\n1. One\n2. Two\n3. Three\n   more\n\n> Said so\n\n"
        "Mail the desk (desk@ledger.example)."
    )


def test_long_paragraphs_wrap_but_an_address_is_never_split() -> None:
    url = "https://ledger.example/" + "x" * 100
    text = readable(f"<p>{'word ' * 30}<a href='{url}'>{url}</a> end</p>")
    assert url in text.splitlines()
    assert all(len(line) <= 72 for line in text.splitlines() if line != url)
