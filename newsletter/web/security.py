"""Headers every answer carries: what a page may load, who may frame it, what may be kept.

The pages load nothing but their own inline style (allowed by a per-request nonce) and
images; they run no script, but for the signup form's one file (``static/signup.js``,
which fills in the reader's time zone), allowed on that page alone by a nonce of its own.
Only the signup page may be framed, and only by the publisher's EMBED_ORIGINS. Pages
reached through a signed link (confirm, unsubscribe, preferences) hold a credential in
their URL and a reader's choices in their body: no cache may keep them.
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, current_app, g, request

# Endpoints whose URL carries a reader's signed token (or whose page shows their address).
TOKEN_PAGES = frozenset(
    {
        "signup.confirm_page",
        "signup.confirm_post",
        "signup.resend",
        "signup.check_inbox",
        "manage.unsubscribe_page",
        "manage.unsubscribe_post",
        "manage.preferences",
    }
)
# Endpoints a publisher's page may show in a frame.
FRAMEABLE = frozenset({"signup.subscribe_form", "signup.subscribe", "signup.check_inbox"})
# Endpoints whose page may run a script: the signup form (shown again after a bad post).
SCRIPTED = frozenset({"signup.subscribe_form", "signup.subscribe"})


def style_nonce() -> str:
    """This answer's nonce for its inline <style>."""
    nonce: str | None = g.get("style_nonce")
    if nonce is None:
        nonce = g.style_nonce = secrets.token_urlsafe(16)
    return nonce


def script_nonce() -> str:
    """This answer's nonce for its <script> (honoured on the SCRIPTED pages only)."""
    nonce: str | None = g.get("script_nonce")
    if nonce is None:
        nonce = g.script_nonce = secrets.token_urlsafe(16)
    return nonce


def _policy(frame_ancestors: str, scripted: bool) -> str:
    return "; ".join(
        (
            "default-src 'none'",
            f"style-src 'nonce-{style_nonce()}'",
            *([f"script-src 'nonce-{script_nonce()}'"] if scripted else []),
            "img-src 'self' https: data:",
            "form-action 'self'",
            "base-uri 'none'",
            f"frame-ancestors {frame_ancestors}",
        )
    )


def _headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    endpoint = request.endpoint or ""
    if endpoint in FRAMEABLE:
        origins = " ".join(current_app.config["EMBED_ORIGINS"])
        frame_ancestors = f"'self' {origins}".strip()
    else:
        frame_ancestors = "'none'"
        # For browsers that predate frame-ancestors; it cannot name several origins, so the
        # frameable pages rely on the policy alone.
        headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Content-Security-Policy", _policy(frame_ancestors, endpoint in SCRIPTED))
    if endpoint in TOKEN_PAGES:
        headers["Cache-Control"] = "no-store"
        headers["Referrer-Policy"] = "no-referrer"
    else:
        headers.setdefault("Referrer-Policy", "same-origin")
    return response


def init_app(app: Flask) -> None:
    app.after_request(_headers)
    app.add_template_global(style_nonce)
    app.add_template_global(script_nonce)
