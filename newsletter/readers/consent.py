"""The consent log: what a reader agreed to or withdrew, when, from where and how."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from flask import current_app, has_request_context, request
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from newsletter.clock import utcnow
from newsletter.db.models import ConsentEvent, ConsentWording
from newsletter.extensions import client_ip, db

# A plain INSERT, built once and sent at once: an event is never read back or changed (the
# log is append-only), so it needs none of the ORM's unit-of-work bookkeeping.
_APPEND = insert(ConsentEvent.__table__)


@dataclass(frozen=True, slots=True)
class Origin:
    """How a change reached us: the form or path, and the caller's IP and user agent."""

    source: str
    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def from_request(cls, source: str) -> Origin:
        if not has_request_context():
            return cls(source=source)
        agent = _printable(request.headers.get("User-Agent", ""))[:300] or None
        # Cut to the columns' sizes: behind a proxy the IP is read from X-Forwarded-For,
        # which a client can fill with anything when the hop count is set too high.
        ip = _printable(client_ip())[:45]
        return cls(source=_printable(source)[:120], ip=ip, user_agent=agent)


def _printable(value: str) -> str:
    """Header text as it is stored: control characters dropped (PostgreSQL refuses NUL)."""
    return "".join(ch for ch in value if ch.isprintable())


def wording() -> tuple[str, str]:
    """The current consent text and its version (a digest of the text itself)."""
    text: str = current_app.config["CONSENT_TEXT"]
    return hashlib.sha256(text.encode()).hexdigest()[:16], text


def record(
    subscriber_id: int,
    action: str,
    origin: Origin,
    detail: dict[str, Any] | None = None,
    *,
    with_wording: bool = False,
) -> None:
    """Append one event to the log (in the caller's transaction)."""
    version = _stored_wording() if with_wording else None
    db.session.execute(
        _APPEND,
        {
            "subscriber_id": subscriber_id,
            "action": action,
            "occurred_at": utcnow(),
            "source": origin.source,
            "ip": origin.ip,
            "user_agent": origin.user_agent,
            "consent_version": version,
            "detail": detail or {},
        },
    )


def _stored_wording() -> str:
    """The current wording's version, its text stored on first use."""
    version, text = wording()
    # Wordings are never deleted, so a version once seen committed is not looked up again
    # by this app: one SELECT per wording and process rather than one per signup.
    committed: set[str] = current_app.extensions.setdefault("newsletter.wordings", set())
    if version in committed:
        return version
    # Versions this session inserted itself may yet be rolled back: never cached from here.
    added: set[str] = db.session.info.setdefault("newsletter.wordings_added", set())
    if db.session.get(ConsentWording, version) is None:
        try:
            with db.session.begin_nested():
                db.session.add(ConsentWording(version=version, text=text))
            added.add(version)
        except IntegrityError:
            pass  # stored at the same moment by another request's first use of it
    elif version not in added:
        committed.add(version)
    return version
