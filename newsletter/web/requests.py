"""How request bodies are read: bytes that are not UTF-8 become U+FFFD, never look-alikes.

Werkzeug decodes a urlencoded body with an error handler that writes each undecodable byte
back as ``%XX``: ``email=pat%FF%FE@example.org`` arrives as the address
``pat%ff%fe@example.org``, which is valid (``%`` may stand in a local part) and not what
anybody typed (a browser sends a typed ``%`` as ``%25``). Decoding them as U+FFFD, as the
multipart parser already does, lets every field check refuse them (see
``readers.addresses.normalize``).
"""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qsl

from flask import Flask, Request, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from newsletter.web.security import TOKEN_PAGES


class _Parser(FormDataParser):
    def _parse_urlencoded(
        self,
        stream: t.IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> t.Any:
        # As werkzeug's own, which reads the whole (already size-limited) body at once.
        items = parse_qsl(
            stream.read().decode("utf-8", "replace"), keep_blank_values=True, errors="replace"
        )
        return stream, self.cls(items), self.cls()


class NewsletterRequest(Request):
    form_data_parser_class = _Parser


def _refuse_oversized() -> None:
    """A body over MAX_CONTENT_LENGTH is a 413 on the token routes too, as where a form is
    parsed, though their views read no field (the confirm button posts none)."""
    if request.endpoint not in TOKEN_PAGES:
        return  # the bounce webhook sets a limit of its own
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()


def init_app(app: Flask) -> None:
    app.request_class = NewsletterRequest
    app.before_request(_refuse_oversized)
