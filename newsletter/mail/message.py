"""Turning rendered parts and headers into the bytes handed to a mail backend."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from flask import current_app

from ..addresses import needs_smtputf8
from ..models import utcnow


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """What a backend needs: the SMTP envelope and the finished message bytes."""

    sender: str
    recipient: str
    data: bytes
    message_id: str

    @property
    def smtputf8(self) -> bool:
        return needs_smtputf8(self.recipient) or needs_smtputf8(self.sender)


def single_line(value: str) -> str:
    """Collapse any whitespace, CR and LF included, so user text cannot start a new header."""
    return " ".join(value.split())


def mailbox(address: str, display_name: str = "") -> Address:
    """An Address whose display name is safe to put in a header."""
    local, _, domain = address.rpartition("@")
    return Address(display_name=single_line(display_name), username=local, domain=domain)


def sender_address() -> Address:
    """The configured From mailbox."""
    header = HeaderRegistry()("From", current_app.config["MAIL_FROM"])
    addresses = header.addresses  # type: ignore[attr-defined]
    if len(addresses) != 1:
        raise ValueError("NEWSLETTER_MAIL_FROM must hold exactly one mailbox")
    found: Address = addresses[0]
    return found


def mail_domain() -> str:
    return sender_address().domain


def list_id() -> str:
    """The List-Id value: configured, or derived from the sender's domain."""
    configured = current_app.config.get("LIST_ID")
    if configured:
        return str(configured)
    site = single_line(current_app.config["SITE_NAME"]).replace('"', "")
    return f'"{site}" <newsletter.{mail_domain()}>'


def deterministic_message_id(*parts: object) -> str:
    """A Message-ID that is the same every time the same parts are sent."""
    digest = hashlib.sha256("/".join(str(part) for part in parts).encode()).hexdigest()[:32]
    return f"<{digest}@{mail_domain()}>"


def build(
    *,
    to: Address,
    subject: str,
    text: str,
    html: str,
    message_id: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> OutgoingMessage:
    """Assemble a multipart/alternative message (text first, HTML last) with our headers."""
    sender = sender_address()
    recipient = to.addr_spec
    # Python's default policy turns a non-ASCII local part into an encoded-word inside
    # the address, which is invalid; such mail must be written as raw UTF-8 for SMTPUTF8.
    international = needs_smtputf8(recipient)
    msg_policy = policy.SMTPUTF8 if international else policy.SMTP
    msg = EmailMessage(policy=msg_policy)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = single_line(subject)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = message_id or make_msgid(domain=sender.domain)
    msg["MIME-Version"] = "1.0"
    msg["Auto-Submitted"] = "auto-generated"
    msg["List-Id"] = list_id()
    feedback_id = current_app.config.get("FEEDBACK_ID")
    if feedback_id:
        msg["Feedback-ID"] = single_line(str(feedback_id))
    for name, value in (extra_headers or {}).items():
        msg[name] = single_line(value)
    msg.set_content(text, subtype="plain")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    for part in msg.iter_parts():
        # The email package copies MIME-Version into subparts; it belongs at the top only.
        del part["MIME-Version"]
    return OutgoingMessage(
        sender=sender.addr_spec,
        recipient=recipient,
        data=msg.as_bytes(policy=msg_policy),
        message_id=str(msg["Message-ID"]),
    )

