"""Readers through the API: start a double opt-in, look a reader up, export, unsubscribe.

Addresses travel in the body, never in the URL, so they stay out of access logs. The
signup is the form's own: ``request_signup`` with its per-address mail limit, the consent
wording of CONSENT_TEXT in the reader's language, and the same answer whatever the
address's state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

from newsletter import i18n
from newsletter.db.models import Frequency, Scope, Subscriber
from newsletter.errors import InvalidAddress, InvalidReaderField
from newsletter.extensions import db
from newsletter.operators import audit
from newsletter.readers import privacy, roster, subscriptions, topics
from newsletter.readers.addresses import address_hash, normalize
from newsletter.readers.consent import Origin
from newsletter.web.api import bp
from newsletter.web.api.auth import current, require
from newsletter.web.api.fields import Fields, json_body
from newsletter.web.api.problems import Problem
from newsletter.web.signup import mail_allowed

ADDRESS_MAX = 320  # the column's size; normalize() refuses what RFC 5321 does not allow
LANGUAGE_MAX = 16  # the column's size

# The one answer to every signup that passed its checks, whatever the address's state.
ACCEPTED = {
    "status": "accepted",
    "detail": "If this address can receive it, a confirmation link is on its way; "
    "nothing changes until the reader uses it.",
}


def reader_target(email: str) -> str:
    """How the audit log names a reader: by the hash suppression keeps, so an erasure leaves
    no address behind in the log (and an auditor who knows the address can still find it)."""
    return f"address:{address_hash(email)}"


def _address(fields: Fields) -> str | None:
    value = fields.text("email", required=True, max_length=ADDRESS_MAX)
    if value is None:
        return None
    try:
        return normalize(value)
    except InvalidAddress as exc:
        fields.fail("email", exc.reason)
        return None


def _address_only() -> str:
    fields = Fields(json_body(), ("email",))
    email = _address(fields)
    fields.done()
    assert email is not None
    return email


@bp.post("/subscriptions")
@require(Scope.SUBSCRIBE)
def subscribe() -> ResponseReturnValue:
    """Start the double opt-in for an address, as the signup form does."""
    fields = Fields(json_body(), ("email", "name", "topics", "frequency", "language", "consent"))
    email = _address(fields)
    name = fields.text("name", max_length=roster.NAME_LENGTH) or ""
    try:
        name = roster.clean_name(name)
    except InvalidReaderField as exc:
        fields.fail("name", exc.reason)
    chosen = fields.choices("topics", list(topics.available())) or []
    frequency = fields.text("frequency", max_length=16)
    if frequency is not None and frequency not in list(Frequency):
        fields.fail("frequency", f"must be one of {', '.join(Frequency)}")
    # Exactly a code of LANGUAGES, as the document lists them (the form is more lenient with
    # a box's ?lang=, but a program can send what it was told).
    language = fields.text("language", max_length=LANGUAGE_MAX)
    if language is not None and language not in i18n.offered():
        fields.fail("language", f"must be one of {', '.join(i18n.offered())}")
    consent = fields.boolean("consent", required=True)
    if consent is False:
        fields.fail("consent", "must be true: the reader agreed to the consent wording")
    fields.done()
    assert email is not None
    caller = current()
    # Over the address's daily limit nothing is written, as with the form: a flood of calls
    # for one address must not grow the consent log or mail anybody.
    if mail_allowed(email):
        # The API itself speaks English; the reader agreed to CONSENT_TEXT in their
        # language (the site's when none is given), and that is the wording recorded.
        with i18n.speaking(language or i18n.default()):
            subscriptions.request_signup(
                email,
                name,
                topics.clean(chosen),
                frequency or Frequency.WEEKLY.value,  # the signup form's default
                Origin.from_request(caller.source),
                # As the form: with one language the reader simply has the site's.
                language=language if i18n.several() else None,
            )
    audit.record(caller.actor, "reader.subscribe", reader_target(email))
    db.session.commit()  # and with it, the mail goes
    return jsonify(ACCEPTED), 202


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def reader_view(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "status": subscriber.status,
        "frequency": subscriber.frequency,
        "topics": subscriber.topics,
        "alerts": subscriber.alerts,
        "created_at": _iso(subscriber.created_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
    }


def _no_reader() -> Problem:
    return Problem(404, "No reader has this address.")


@bp.post("/readers/lookup")
@require(Scope.READ)
def lookup() -> ResponseReturnValue:
    """A reader's state, topics and frequency, by address."""
    email = _address_only()
    subscriber = subscriptions.by_email(email)
    audit.record(current().actor, "reader.lookup", reader_target(email))
    db.session.commit()
    if subscriber is None:
        raise _no_reader()
    return jsonify(reader_view(subscriber))


@bp.post("/readers/export")
@require(Scope.READ)
def export() -> ResponseReturnValue:
    """Everything held about an address (GDPR art. 15 and 20), as the CLI's export-data."""
    email = _address_only()
    held = privacy.export_data(email)
    audit.record(current().actor, "reader.export", reader_target(email))
    db.session.commit()
    return jsonify(held)


# The one answer to every unsubscribe: a send token mails everyone but reads nobody's data,
# so it learns neither whether an address is a reader's nor in what state.
UNSUBSCRIBED = {
    "status": "accepted",
    "detail": "If this address is a reader's, their consent is withdrawn: "
    "nothing more is sent to it.",
}


@bp.post("/readers/unsubscribe")
@require(Scope.SEND)
def unsubscribe() -> ResponseReturnValue:
    """Withdraw a reader's consent, logged as the API's act (the token names the source)."""
    email = _address_only()
    subscriber = subscriptions.by_email(email)
    caller = current()
    withdrawn = subscriber is not None and subscriptions.unsubscribe(
        subscriber.uid, Origin.from_request(caller.source)
    )
    audit.record(caller.actor, "reader.unsubscribe", reader_target(email), withdrawn=withdrawn)
    db.session.commit()
    return jsonify(UNSUBSCRIBED), 202
