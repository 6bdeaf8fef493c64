"""POST /webhooks/bounces: a mail provider or relay hands us one bounce or complaint."""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from newsletter.bounces.process import Summary, process_message
from newsletter.extensions import csrf

bp = Blueprint("bounces", __name__)

ACCEPTED_TYPES = ("message/rfc822", "text/plain")


def _authorized(expected: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>``, compared in constant time."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Hashing first keeps the comparison's time independent of the token's length too.
    return hmac.compare_digest(
        hashlib.sha256(given.strip().encode("utf-8", "replace")).digest(),
        hashlib.sha256(expected.encode("utf-8")).digest(),
    )


@bp.post("/webhooks/bounces")
@csrf.exempt
def webhook() -> ResponseReturnValue:
    """Process the raw RFC 822 message in the body; answer with the summary as JSON."""
    expected = current_app.config.get("BOUNCE_WEBHOOK_TOKEN")
    if expected is None or str(expected) == "":
        abort(404)  # not configured: as if there were no such endpoint
    if not _authorized(str(expected)):
        return (
            jsonify(error="missing or wrong bearer token"),
            401,
            {"WWW-Authenticate": 'Bearer realm="bounces"'},
        )
    if request.mimetype not in ACCEPTED_TYPES:
        return jsonify(error="send the raw message as message/rfc822 or text/plain"), 415
    limit = int(current_app.config["BOUNCE_MAX_BYTES"])
    request.max_content_length = limit
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return jsonify(error=f"the message is larger than {limit:,} bytes"), 413
    summary = Summary()
    outcome = process_message(raw, "webhook")
    summary.add("body", outcome)
    if outcome.result == "unparseable":
        return jsonify(error=f"unparseable: {outcome.reason}", **summary.as_dict()), 400
    return jsonify(summary.as_dict()), 200
