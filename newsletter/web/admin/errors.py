"""The console's error pages: in its own layout, each saying what was wrong."""

from __future__ import annotations

from flask import render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import BadRequest, Forbidden, NotFound, TooManyRequests

from newsletter.web.admin import bp
from newsletter.web.admin.forms import SignInForm


def _headers(exc: Exception) -> list[tuple[str, str]]:
    # Keep what the error carries (Retry-After), not its body's type.
    if not hasattr(exc, "get_headers"):
        return []
    return [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]


@bp.errorhandler(BadRequest)
def bad_request(exc: BadRequest) -> tuple[str, int]:
    if isinstance(exc, CSRFError):
        message = "This form had expired. Go back, reload the page and submit it again."
    else:
        message = exc.description or "The request could not be understood."
    return render_template("admin/error.html", title="Please check", message=message), 400


@bp.errorhandler(Forbidden)
def forbidden(exc: Forbidden) -> tuple[str, int]:
    message = "Only an owner of the newsletter may do this. Ask an owner if it needs doing."
    return render_template("admin/error.html", title="Not for your role", message=message), 403


@bp.errorhandler(NotFound)
def not_found(exc: NotFound) -> tuple[str, int]:
    message = (
        exc.description
        if exc.description != NotFound.description
        else "There is no page at this address."
    )
    return render_template("admin/error.html", title="Not found", message=message), 404


@bp.errorhandler(TooManyRequests)
def too_many(exc: TooManyRequests) -> tuple[str, int, list[tuple[str, str]]]:
    if request.endpoint == "admin.sign_in":
        # The sign-in page again, with the same words whoever the address typed names.
        form = SignInForm()
        form.password.errors = [
            "Too many attempts to sign in. Please wait a few minutes and try again."
        ]
        page = render_template("admin/sign_in.html", form=form, next=None)
        return page, 429, _headers(exc)
    message = "Too many requests. Please wait a little and try again."
    if request.endpoint == "admin.account":
        message = "Too many wrong passwords. Please wait a few minutes and try again."
    page = render_template("admin/error.html", title="Too many requests", message=message)
    return page, 429, _headers(exc)
