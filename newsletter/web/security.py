"""Headers every answer carries: what a page may load, who may frame it, what may be kept.

The pages load nothing but their own inline style (allowed by a per-request nonce) and
images; they run no script. Three pages are the exceptions, each named below: the signup
form runs its one script (from this origin) to fill in the reader's time zone, an edition's
console page runs the console's one script (from this origin) to follow its sending, and
the preview page frames the mail's HTML, which is served with a policy of its own. Only the
signup page may be framed by another site, and only by the publisher's EMBED_ORIGINS.
Pages reached through a signed link (confirm, unsubscribe, preferences) hold a credential in
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
# Console pages that run a script served by this origin, which fetches from this origin.
SCRIPTED = frozenset({"admin.edition"})
# The signup form (shown again after a bad post) runs static/signup.js, served by this
# origin, which fetches nothing: it puts the browser's time zone in a hidden field.
SIGNUP_SCRIPTED = frozenset({"signup.subscribe_form", "signup.subscribe"})
# Console pages that frame a page of this origin (the mail preview).
FRAMING = frozenset({"admin.preview"})
# A mail's HTML shown by the console: inline styles as every mail has them, never a script,
# sandboxed, and framed only by the console.
MAIL_PREVIEWS = frozenset({"admin.preview_html"})
MAIL_PREVIEW_POLICY = "; ".join(
    (
        "default-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src https: data:",
        "form-action 'none'",
        "base-uri 'none'",
        "sandbox",
        "frame-ancestors 'self'",
    )
)


# Where this answer's nonce is kept (pages.once puts a marker there while it renders).
NONCE_ON_G = "style_nonce"


def style_nonce() -> str:
    """This answer's nonce for its inline <style>."""
    nonce: str | None = g.get(NONCE_ON_G)
    if nonce is None:
        nonce = secrets.token_urlsafe(16)
        setattr(g, NONCE_ON_G, nonce)
    return nonce


def _policy(frame_ancestors: str, endpoint: str) -> str:
    directives = [
        "default-src 'none'",
        f"style-src 'nonce-{style_nonce()}'",
        "img-src 'self' https: data:",
        "form-action 'self'",
        "base-uri 'none'",
        f"frame-ancestors {frame_ancestors}",
    ]
    if endpoint in SCRIPTED:
        directives += ["script-src 'self'", "connect-src 'self'"]
    elif endpoint in SIGNUP_SCRIPTED:
        directives.append("script-src 'self'")
    if endpoint in FRAMING:
        directives.append("frame-src 'self'")
    return "; ".join(directives)


def _headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    endpoint = request.endpoint or ""
    if endpoint in MAIL_PREVIEWS:
        headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        policy = MAIL_PREVIEW_POLICY
    elif endpoint in FRAMEABLE:
        origins = " ".join(current_app.config["EMBED_ORIGINS"])
        policy = _policy(f"'self' {origins}".strip(), endpoint)
    else:
        # For browsers that predate frame-ancestors; it cannot name several origins, so the
        # frameable pages rely on the policy alone.
        headers.setdefault("X-Frame-Options", "DENY")
        policy = _policy("'none'", endpoint)
    headers.setdefault("Content-Security-Policy", policy)
    if endpoint in TOKEN_PAGES:
        headers["Cache-Control"] = "no-store"
        headers["Referrer-Policy"] = "no-referrer"
    else:
        headers.setdefault("Referrer-Policy", "same-origin")
    return response


def init_app(app: Flask) -> None:
    app.after_request(_headers)
    app.add_template_global(style_nonce)
