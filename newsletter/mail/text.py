"""Sanitized article HTML as the text part shows it: paragraphs, list items and links."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from html.parser import HTMLParser

# Lines of the text part are kept to this, the width plain-text mail has always been read at.
WIDTH = 72


@dataclass(frozen=True, slots=True)
class _Block:
    """One paragraph or list item: its text, what starts its first line, and whether it
    follows the previous block on the next line (items of a list, a <br>) or after a gap."""

    text: str
    marker: str = ""
    quoted: bool = False
    tight: bool = False


class _Reader(HTMLParser):
    """Collects the blocks of the few tags the cleaner lets through."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[_Block] = []
        self._words: list[str] = []
        self._lists: list[list[int]] = []  # per open list: [next number], or [] when bulleted
        self._marker = ""
        self._tight = False
        self._quotes = 0
        self._links: list[tuple[str, int]] = []  # open links: href, where their text starts

    def _flush(self, *, tight: bool = False) -> None:
        text = " ".join("".join(self._words).split())
        if text:
            self.blocks.append(_Block(text, self._marker, self._quotes > 0, self._tight))
            # A line broken inside a list item stays under the item's text.
            self._marker = " " * len(self._marker) if tight else ""
            self._tight = tight
        elif not tight:
            self._tight = False  # a <br> before a new paragraph does not join them
        self._words = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._links.append((dict(attrs).get("href") or "", len(self._words)))
        elif tag == "br":
            self._flush(tight=True)
        elif tag in ("p", "blockquote", "ul", "ol", "li"):
            self._flush()
            if tag == "blockquote":
                self._quotes += 1
            elif tag in ("ul", "ol"):
                self._lists.append([1] if tag == "ol" else [])
            elif tag == "li":
                self._li()

    def _li(self) -> None:
        numbering = self._lists[-1] if self._lists else []
        if numbering:
            self._marker = f"{numbering[0]}. "
            numbering[0] += 1
        else:
            self._marker = "- "

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._links:
            href, start = self._links.pop()
            shown = " ".join("".join(self._words[start:]).split())
            if href and _bare(href) != _bare(shown):
                self._words.append(f" ({href.removeprefix('mailto:')})")
            elif href:
                self._words[start:] = [href]  # "ledger.example/x" becomes a link a client finds
        elif tag in ("p", "blockquote", "ul", "ol", "li"):
            self._flush()
            if tag == "blockquote" and self._quotes:
                self._quotes -= 1
            elif tag in ("ul", "ol") and self._lists:
                self._lists.pop()

    def handle_data(self, data: str) -> None:
        self._words.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def _bare(url: str) -> str:
    """A link as a person writes it, for telling whether its text already is its address."""
    for prefix in ("mailto:", "https://", "http://", "www."):
        url = url.removeprefix(prefix)
    return url.rstrip("/")


def readable(html: str, width: int = WIDTH) -> str:
    """The text of sanitized HTML: paragraphs apart, list items as "- ", links as "text (url)".

    Lines are wrapped at ``width`` but a word is never split, so a long address stays whole
    and clickable.
    """
    reader = _Reader()
    reader.feed(html)
    reader.close()
    lines: list[str] = []
    for block in _list_gaps(reader.blocks):
        if lines and not block.tight:
            lines.append("")
        quote = "> " if block.quoted else ""
        lines.extend(
            textwrap.wrap(
                block.text,
                width,
                initial_indent=quote + block.marker,
                subsequent_indent=quote + " " * len(block.marker),
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines)


def _list_gaps(blocks: list[_Block]) -> list[_Block]:
    """Items of one list go line by line; a list is set apart from the text around it."""
    out: list[_Block] = []
    for block in blocks:
        follows_item = bool(out) and out[-1].marker != "" and block.marker != ""
        tight = block.tight or follows_item
        out.append(_Block(block.text, block.marker, block.quoted, tight))
    return out
