"""Error pages: every client error gets a readable page, never a stack trace.

Under /api/ the same errors are problem+json instead (``web.api.problems``).
"""

from __future__ import annotations

import logging

from flask import Flask, render_template
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError

from newsletter.i18n import gettext
from newsletter.i18n import lazy_gettext as _l
from newsletter.web.api import problems, under_api

log = logging.getLogger(__name__)

# Said in the reader's language rather than as werkzeug names them ("Not Found").
TITLES = {
    400: _l("Bad request"),
    403: _l("Not allowed"),
    404: _l("Page not found"),
    405: _l("Not allowed here"),
    409: _l("Not possible now"),
    410: _l("No longer here"),
    413: _l("Too much at once"),
    415: _l("Not understood"),
    429: _l("Too many attempts"),
}

MESSAGES = {
    400: _l("The request could not be understood. Please go back and try again."),
    404: _l("There is no page at this address."),
    405: _l("This page cannot be used that way."),
    413: _l("That was more than this form accepts."),
    429: _l("Too many attempts from your network. Please wait a little and try again."),
}


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> ResponseReturnValue:
        if under_api():
            return problems.response(BadRequest(exc.description))
        return render_template(
            "error.html",
            title=gettext("Please try again"),
            message=gettext("This form had expired. Go back, reload the page and submit it again."),
        ), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        code = exc.code or 500
        if code >= 500:
            log.error("server error: %s", exc)
        if under_api():
            return problems.response(exc)
        # Keep the headers the error carries (Allow on a 405, Retry-After), not its body's type.
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return (
            render_template(
                "error.html",
                title=TITLES.get(code) or gettext("Something went wrong"),
                message=MESSAGES.get(code) or gettext("Something went wrong on our side."),
            ),
            code,
            headers,
        )

    @app.errorhandler(InternalServerError)
    def server_error(exc: InternalServerError) -> ResponseReturnValue:
        if under_api():
            return problems.response(exc)
        return render_template(
            "error.html",
            title=gettext("Something went wrong"),
            message=gettext(
                "Something went wrong on our side. Nothing you did caused it; "
                "please try again in a few minutes."
            ),
        ), 500
