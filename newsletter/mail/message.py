"""Turning rendered mail into bytes: built once per content, personalized per reader.

A ``MessageTemplate`` holds the finished MIME structure of one content with named slots
(greeting, links) still open. Personalizing it joins pre-encoded bytes with a few small,
freshly encoded values, so a digest to a million readers is rendered once per distinct
content rather than once per reader.
"""

from __future__ import annotations

import binascii
import html
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import Header
from email.headerregistry import Address, HeaderRegistry
from email.utils import format_datetime, make_msgid
from functools import lru_cache

import idna
from flask import current_app

from newsletter.clock import utcnow
from newsletter.errors import ConfigError
from newsletter.mail import dkim

CRLF = b"\r\n"
SLOT_OPEN, SLOT_CLOSE = "\ue000", "\ue001"  # private-use characters never found in content
_SLOT = re.compile(f"{SLOT_OPEN}([a-z_]+){SLOT_CLOSE}")
# Atoms that need no quoting or encoding ("=" and "?" left out: they could form an encoded-word).
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9 !#$%&'*+/^_`{|}~-]*")
_registry = HeaderRegistry()


def slot(name: str) -> str:
    """The marker a template renders where a per-reader value goes."""
    return f"{SLOT_OPEN}{name}{SLOT_CLOSE}"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """What a backend needs: the SMTP envelope and the finished message bytes."""

    sender: str
    recipient: str
    data: bytes
    message_id: str
    # True when no line of ``data`` starts with ".": SMTP then needs no dot-stuffing and the
    # sender skips scanning the whole message for it (RFC 5321 4.5.2). Only the builder,
    # which encodes every body line itself, can promise that.
    dot_free: bool = False

    @property
    def smtputf8(self) -> bool:
        return needs_smtputf8(self.recipient) or needs_smtputf8(self.sender)


def needs_smtputf8(address: str) -> bool:
    """True when the local part is not ASCII, so only an SMTPUTF8 server can take it."""
    return not address.rsplit("@", 1)[0].isascii()


def single_line(value: str) -> str:
    """Collapse any whitespace, CR and LF included, so user text cannot start a new header."""
    return " ".join(value.split())


def ascii_domain(address: str) -> str:
    """``address`` with an international domain written as its ASCII (A-label) form.

    Stored addresses keep the Unicode domain, which the email package would turn into an
    encoded-word inside the address and smtplib cannot put in RCPT TO without SMTPUTF8.
    """
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"


def mailbox(address: str, display_name: str = "") -> Address:
    """An Address whose display name is safe to put in a header (domain as its A-label)."""
    local, _, domain = ascii_domain(address).rpartition("@")
    return Address(display_name=single_line(display_name), username=local, domain=domain)


def sender_address() -> Address:
    """The configured From mailbox."""
    return _parse_mailbox(current_app.config["MAIL_FROM"])


@lru_cache(maxsize=8)
def _parse_mailbox(value: str) -> Address:
    addresses = _registry("From", value).addresses  # type: ignore[attr-defined]
    if len(addresses) != 1:
        raise ConfigError("NEWSLETTER_MAIL_FROM", "must hold exactly one mailbox")
    found: Address = addresses[0]
    return found


def mail_domain() -> str:
    return sender_address().domain


def list_id() -> str:
    """The List-Id value: configured, or derived from the sender's domain."""
    configured = current_app.config.get("LIST_ID")
    if configured:
        return str(configured)
    site = single_line(current_app.config["SITE_NAME"])
    if site.isascii() and "=?" not in site:
        phrase = '"{}"'.format(site.replace("\\", "\\\\").replace('"', '\\"'))
    else:
        # Encoded-words may form the phrase but never sit inside a quoted string (RFC 2047 5).
        phrase = single_line(Header(site, "utf-8").encode())
    return f"{phrase} <newsletter.{mail_domain()}>"


def header(name: str, value: str, *, text: bool = False) -> bytes:
    """One unstructured header field, folded; RFC 2047-encoded only if needed.

    The value is never parsed by the email package's header registry: it decodes any
    encoded-words it finds, so a title spelling CR LF as one would reach the wire as a header
    line of its own (and Python before 3.11.10 writes it out unchecked, CVE-2024-6923).
    ``text`` marks what readers see (the subject): there an ASCII "=?" is encoded as well, so
    a title that looks like an encoded-word is shown as written.
    """
    value = single_line(value)
    if value.isascii() and not (text and ("=?" in value or _unfoldable(value))):
        # Structured ASCII fields (List-Unsubscribe's URLs, Message-IDs) must stay literal:
        # fold at spaces only, which every parser unfolds back to the same value.
        return _fold_ascii(f"{name}: {value}").encode("ascii")
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _unfoldable(value: str) -> bool:
    """Whether a word is too long for a line even when folded at spaces (RFC 5322 2.1.1)."""
    return any(len(word.encode("utf-8")) > _LONGEST_WORD for word in value.split(" "))


# Folding happens at spaces only; a longer word is RFC 2047-encoded, which splits anywhere.
_LONGEST_WORD = 900


def _fold_ascii(line: str, width: int = 78) -> str:
    out, current = [], ""
    # The value's first word stays beside the field name: a value that begins on a folded
    # line is read with a leading space by some parsers (Python's among them).
    for index, word in enumerate(line.split(" ")):
        if index > 1 and len(current) + 1 + len(word) > width:
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return "\r\n".join(out) + "\r\n"


def to_header(addr: str, name: str = "") -> bytes:
    """The To field; the common case (short ASCII name and address) is a single format."""
    name = single_line(name)
    if addr.isascii() and _PLAIN_PHRASE.fullmatch(name) and len(name) + len(addr) < 70:
        return f"To: {name} <{addr}>\r\n".encode() if name else f"To: {addr}\r\n".encode()
    return address_field("To", addr, name)


def address_field(field: str, addr: str, display_name: str = "") -> bytes:
    """A From or To field holding one mailbox, built from its parts and never parsed.

    A non-ASCII address is sent over SMTPUTF8 as raw UTF-8, never as an encoded-word (RFC
    2047 5, RFC 6532); so is its display name. Otherwise a display name that is not plain
    ASCII atoms is RFC 2047-encoded when it holds non-ASCII or "=?", and quoted if not.
    """
    local, _, domain = addr.rpartition("@")
    addr_spec = Address(username=local, domain=domain).addr_spec
    name = single_line(display_name)
    if _unfoldable(name.replace("\\", "\\\\").replace('"', '\\"')):  # as it would be quoted
        phrase = single_line(Header(name, "utf-8").encode())
    elif _PLAIN_PHRASE.fullmatch(name):
        phrase = name
    elif "=?" not in name and (name.isascii() or not addr.isascii()):
        phrase = '"{}"'.format(name.replace("\\", "\\\\").replace('"', '\\"'))
    else:
        phrase = single_line(Header(name, "utf-8").encode())
    value = f"{phrase} <{addr_spec}>" if phrase else addr_spec
    return _fold_ascii(f"{field}: {value}").encode("utf-8")


# Printable ASCII but "=", no whitespace: quoted-printable leaves such text as it is.
_QP_LITERAL = re.compile(r"[!-<>-~]*").fullmatch


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends; every line, the last too, leaves room for '='.

    A line never starts with '.': it is written =2E, so the message needs no SMTP
    dot-stuffing (RFC 5321 4.5.2) and the sender can skip scanning it.
    """
    if _QP_LITERAL(text):
        # Links and tokens: nothing to escape, only the length and a leading dot matter.
        line = text.encode("ascii")
        return _wrap(b"=2E" + line[1:] if line.startswith(b".") else line)
    plain = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    lines = binascii.b2a_qp(plain).split(b"\n")
    # b2a_qp keeps lines to 76 but for rare trailing-space cases; the last line must also
    # leave room for the soft break that joins it to the next piece.
    lines = [b"=2E" + line[1:] if line.startswith(b".") else line for line in lines]
    lines[-1] = _wrap(lines[-1])
    return CRLF.join(line if len(line) <= 76 else _wrap(line) for line in lines)


def _wrap(line: bytes, width: int = 75) -> bytes:
    """Split an encoded line with soft breaks so no piece exceeds ``width`` plus its '='."""
    pieces = []
    while len(line) > width:
        cut = width
        while b"=" in line[cut - 2 : cut]:
            cut -= 1  # never split an =XX escape
        pieces.append(line[:cut] + b"=")
        line = line[cut:]
        if line.startswith(b"."):
            line = b"=2E" + line[1:]  # nor start a piece with a dot
    pieces.append(line)
    return CRLF.join(pieces)


# A soft line break: decoders drop it, so pieces encoded apart join into one body.
_SOFT_BREAK = b"=\r\n"


@dataclass(frozen=True, slots=True)
class _Part:
    """A body part as alternating pre-encoded bytes and slot names."""

    pieces: tuple[bytes | str, ...]

    @classmethod
    def compile(cls, rendered: str) -> _Part:
        pieces: list[bytes | str] = []
        for index, chunk in enumerate(_SLOT.split(rendered)):
            if index % 2:
                pieces.append(chunk)
            elif chunk:
                pieces.append(_qp(chunk) + _SOFT_BREAK)
        return cls(tuple(pieces))

    def fill(self, encoded: Mapping[str, bytes]) -> bytes:
        """The part with each slot replaced by its value from ``_encode``."""
        return b"".join(
            [encoded[piece] if isinstance(piece, str) else piece for piece in self.pieces]
        )


def _encode(values: Mapping[str, str]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Each value quoted-printable for the text part and, HTML-escaped, for the HTML part.

    A value HTML escaping leaves alone (links, most greetings) is encoded once for both.
    """
    text: dict[str, bytes] = {}
    markup: dict[str, bytes] = {}
    for name, value in values.items():
        text[name] = _qp(value) + _SOFT_BREAK
        escaped = html.escape(value)
        markup[name] = text[name] if escaped == value else _qp(escaped) + _SOFT_BREAK
    return text, markup


class MessageTemplate:
    """One content's message with per-reader slots: headers, text part and HTML part."""

    def __init__(
        self,
        *,
        subject: str,
        text: str,
        html_body: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.boundary = f"=_{secrets.token_hex(12)}"
        fields = {
            "MIME-Version": "1.0",
            "Auto-Submitted": "auto-generated",
            "List-Id": list_id(),
        }
        feedback_id = current_app.config.get("FEEDBACK_ID")
        if feedback_id:
            fields["Feedback-ID"] = str(feedback_id)
        fields.update(headers or {})
        sender = sender_address()
        self.sender = ascii_domain(sender.addr_spec)
        self.signer = dkim.signer()
        self.head = b"".join(
            (
                address_field("From", self.sender, sender.display_name),
                header("Subject", subject, text=True),
                *(header(name, value) for name, value in fields.items()),
                f'Content-Type: multipart/alternative; boundary="{self.boundary}"\r\n'.encode(),
            )
        )
        self.text = _Part.compile(text)
        self.html = _Part.compile(html_body)  # its slot values are escaped by _encode
        delimiter = f"--{self.boundary}\r\n".encode()
        part_head = (
            "Content-Type: text/{}; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        self._text_open = CRLF + delimiter + part_head.format("plain").encode()
        self._html_open = CRLF + delimiter + part_head.format("html").encode()
        self._close = f"\r\n--{self.boundary}--\r\n".encode()

    def personalize(
        self,
        recipient: str,
        display_name: str = "",
        *,
        message_id: str | None = None,
        values: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        date: bytes | None = None,
        envelope_sender: str | None = None,
    ) -> OutgoingMessage:
        """The finished message for one reader (``envelope_sender``: a VERP return path)."""
        text_values, html_values = _encode(values or {})
        recipient = ascii_domain(recipient)
        message_id = message_id or make_msgid(domain=self.sender.rpartition("@")[2])
        per_reader = [
            to_header(recipient, display_name),
            date or date_header(),
            f"Message-ID: {message_id}\r\n".encode(),
            *(header(name, value) for name, value in (headers or {}).items()),
        ]
        data = b"".join(
            (
                *per_reader,
                self.head,
                self._text_open,
                self.text.fill(text_values),
                self._html_open,
                self.html.fill(html_values),
                self._close,
            )
        )
        if self.signer is not None:
            data = self.signer.sign(data)
        return OutgoingMessage(
            sender=envelope_sender or self.sender,
            recipient=recipient,
            data=data,
            message_id=message_id,
            # Header lines start with a field name or folding white space; body lines are
            # quoted-printable from _qp, which writes a leading dot as =2E.
            dot_free=True,
        )


def date_header() -> bytes:
    return f"Date: {format_datetime(utcnow().replace(microsecond=0))}\r\n".encode()


def build(*, to: Address, subject: str, text: str, html: str) -> OutgoingMessage:
    """A single message with nothing to personalize (confirmation mails and notices)."""
    template = MessageTemplate(subject=subject, text=text, html_body=html)
    return template.personalize(to.addr_spec, to.display_name)
