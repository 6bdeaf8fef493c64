"""Reading bounces and complaints: RFC 3464 DSNs, RFC 5965 ARF reports, and everything else.

Pure functions over message bytes: nothing here touches the database or the app, so each
rule is tested on its own. ``parse`` says what a message is and what it reports;
``verdict`` turns that into one of hard, soft, policy or complaint, or a reason to ignore it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from enum import StrEnum

from newsletter.db.models import BounceKind

MAX_TEXT = 500

# Headers naming where the bounce was delivered: the envelope recipient, i.e. our VERP address.
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
DSN_TYPES = ("message/delivery-status", "message/global-delivery-status", "text/delivery-status")
ORIGINAL_TYPES = (
    "message/rfc822",
    "message/global",
    "text/rfc822-headers",
    "message/global-headers",
)
# ARF feedback types that are a reader's complaint; auth-failure is about us (RFC 6591).
COMPLAINT_TYPES = ("abuse", "fraud", "virus")

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY_CODE = re.compile(r"(?:^|[\s;])([45])\d\d(?:[\s-]|$)")
_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@([A-Za-z0-9.-]+)")
# Only consulted when the status code itself is vague (X.0.0, X.5.x): real servers' wording.
_POLICY_TEXT = re.compile(
    r"spam|block(?:ed|list)|blacklist|denylist|dmarc|\bspf\b|dkim|reputation|policy|"
    r"unauthenticated|not authori[sz]ed|content rejected|spamhaus|barracuda|\brbl\b",
    re.IGNORECASE,
)
_UNKNOWN_TEXT = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient|account)|"
    r"(?:mailbox|account|address|user|recipient)\b[^.;]{0,40}\b(?:does not|doesn't) exist|"
    r"mailbox not found|invalid (?:mailbox|recipient)|unknown recipient|"
    r"not a valid (?:mailbox|recipient)|recipient not found",
    re.IGNORECASE,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto(?:matic)?[- ]?(?:reply|response)|out of (?:the )?office|"
    r"auto:|away from|abwesenheit|absence|r[ée]ponse automatique|vacation)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery (?:status|failure|has failed|notification)|"
    r"failure notice|mail delivery failed|could not be delivered",
    re.IGNORECASE,
)


class Form(StrEnum):
    DSN = "dsn"
    ARF = "arf"
    OTHER = "other"


class Unparseable(ValueError):
    """The input is not a message, or is a report too broken to act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """One per-recipient block of a DSN."""

    action: str
    status: str  # the effective X.Y.Z code
    diagnostic: str
    final_recipient: str = ""
    original_recipient: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    """What one incoming message is and what it says, before any lookup."""

    form: Form
    # Where the bounce itself was delivered (Delivered-To, X-Original-To, To...).
    envelope_recipients: tuple[str, ...] = ()
    # The original message's envelope sender: its Return-Path, X-Postfix-Sender, ARF's
    # Original-Mail-From. Each is one of our VERP addresses if the report is genuine.
    original_senders: tuple[str, ...] = ()
    original_message_id: str | None = None
    recipients: tuple[RecipientStatus, ...] = ()
    feedback_type: str | None = None
    original_rcpt_to: str | None = None
    user_agent: str = ""
    message_id: str | None = None  # the report's own Message-ID, to recognize a repeat
    note: str = ""  # for Form.OTHER: what it seems to be

    @property
    def verp_candidates(self) -> tuple[str, ...]:
        """Every address that should be our VERP address, in order of trust."""
        seen: dict[str, str] = {}
        for address in (*self.envelope_recipients, *self.original_senders):
            seen.setdefault(address.lower(), address)
        return tuple(seen.values())


@dataclass(frozen=True, slots=True)
class Verdict:
    """A report's meaning: a kind with its code and text, or why it is not acted on."""

    kind: BounceKind | None
    status: str | None = None
    diagnostic: str = ""
    reason: str = ""  # why kind is None
    recipient: str = ""


@dataclass(frozen=True, slots=True)
class _Fields:
    """Header fields of one block, names lower-cased, values unfolded."""

    values: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str) -> str:
        found = self.values.get(name.lower())
        return found[0] if found else ""

    @classmethod
    def parse(cls, text: str) -> _Fields:
        """Fields from ``Name: value`` lines, folded lines joined."""
        values: dict[str, list[str]] = {}
        last: list[str] | None = None
        for line in text.splitlines():
            if line[:1] in (" ", "\t"):
                if last:
                    last[-1] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            name = name.strip().lower()
            if not sep or not name or " " in name:
                last = None
                continue
            last = values.setdefault(name, [])
            last.append(value.strip())
        return cls({name: [clean(value) for value in found] for name, found in values.items()})

    @classmethod
    def of(cls, message: Message) -> _Fields:
        values: dict[str, list[str]] = {}
        for name, value in message.items():
            values.setdefault(name.lower(), []).append(clean(str(value)))
        return cls(values)


def clean(value: str, limit: int = MAX_TEXT) -> str:
    """One line of printable text, whitespace collapsed, cut to ``limit`` characters."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
    return text[:limit]


def redact(text: str) -> str:
    """Diagnostic text without mailbox names (kept after a reader is erased): ``***@domain``."""
    return _ADDRESS.sub(lambda found: f"***@{found.group(1)}", text)


def parse(raw: bytes) -> Report:
    """Read one message; raise Unparseable when it is not a message or a usable report."""
    if not raw.strip():
        raise Unparseable("empty message")
    try:
        message = message_from_bytes(raw, policy=policy.compat32)
        if not message.keys():
            raise Unparseable("no header fields: not an email message")
        return _report(message)
    except Unparseable:
        raise
    except Exception as exc:  # the email package can fail on hostile input in many ways
        raise Unparseable(f"cannot be read as an email message ({type(exc).__name__})") from exc


def _report(message: Message) -> Report:
    envelope = tuple(_addresses(message, ENVELOPE_HEADERS))
    own_id = _message_id(message.get("Message-ID", ""))
    report = _find_report(message)
    if report is None:
        return Report(
            Form.OTHER, envelope_recipients=envelope, message_id=own_id, note=_what_else(message)
        )
    param = report.get_param("report-type")
    report_type = param.lower() if isinstance(param, str) else ""
    parts = [part for part in report.get_payload() if isinstance(part, Message)]
    types = [part.get_content_type() for part in parts]
    original = _original_headers(parts)
    original_from = tuple(_addresses(original, ("Return-Path",))) if original else ()
    original_id = _message_id(original.get("Message-ID", "")) if original else None
    if report_type in ("delivery-status", "global-delivery-status") or (
        not report_type and any(kind in DSN_TYPES for kind in types)
    ):
        status_part = next((p for p in parts if p.get_content_type() in DSN_TYPES), None)
        if status_part is None:
            raise Unparseable("delivery-status report without a delivery-status part")
        per_message, per_recipient = _status_blocks(status_part)
        recipients = tuple(_recipient(block) for block in per_recipient if block.values)
        if not recipients:
            raise Unparseable("delivery-status report without per-recipient fields")
        senders = tuple(
            _field_address(per_message.get(name))
            for name in ("X-Postfix-Sender", "X-Original-Envelope-From")
            if per_message.get(name)
        )
        return Report(
            Form.DSN,
            envelope_recipients=envelope,
            original_senders=(*original_from, *senders),
            original_message_id=original_id
            or _message_id(per_message.get("X-Original-Message-ID")),
            recipients=recipients,
            message_id=own_id,
        )
    if report_type == "feedback-report" or (not report_type and "message/feedback-report" in types):
        feedback = next(
            (p for p in parts if p.get_content_type() == "message/feedback-report"), None
        )
        if feedback is None:
            raise Unparseable("feedback report without a message/feedback-report part")
        fields = _feedback_fields(feedback)
        feedback_type = fields.get("Feedback-Type").lower()
        if not feedback_type:
            raise Unparseable("feedback report without Feedback-Type")
        mail_from = fields.get("Original-Mail-From")
        return Report(
            Form.ARF,
            envelope_recipients=envelope,
            original_senders=(*original_from, *([_field_address(mail_from)] if mail_from else [])),
            original_message_id=original_id,
            feedback_type=feedback_type,
            original_rcpt_to=_field_address(fields.get("Original-Rcpt-To")) or None,
            user_agent=fields.get("User-Agent"),
            message_id=own_id,
        )
    if report_type == "disposition-notification":
        what = "a read receipt"
    else:
        what = f"a report of type {clean(report_type, 40) or 'unknown'}"
    return Report(
        Form.OTHER,
        envelope_recipients=envelope,
        message_id=own_id,
        note=f"{what}, not a bounce or complaint",
    )


def _find_report(message: Message) -> Message | None:
    """The multipart/report part, top level or nested, but never inside an attached message."""
    for part in _parts(message):
        if part.get_content_type() == "multipart/report":
            return part
    return None


def _parts(message: Message) -> Iterator[Message]:
    yield message
    if message.get_content_maintype() == "multipart" and message.is_multipart():
        for part in message.get_payload():
            if isinstance(part, Message):
                yield from _parts(part)


def _what_else(message: Message) -> str:
    """Why a message without a report is not acted on, in words for the summary."""
    subject = str(message.get("Subject", ""))
    auto = str(message.get("Auto-Submitted", "")).lower()
    sender = str(message.get("From", "")).lower()
    if "mailer-daemon" in sender or "postmaster" in sender:
        return "a bounce in plain text without a DSN part; not acted on"
    if (
        auto.startswith("auto-replied")
        or message.get("X-Autoreply")
        or message.get("X-Autorespond")
        or str(message.get("Precedence", "")).lower() == "auto_reply"
        or _AUTO_SUBJECT.search(subject)
    ):
        return "an auto-reply (out of office), not a bounce"
    if _BOUNCE_SUBJECT.search(subject):
        return "a bounce in plain text without a DSN part; not acted on"
    return "neither a delivery status notification nor a complaint report"


def _original_headers(parts: list[Message]) -> Message | None:
    """The header fields of the original message a report includes, if it does."""
    for part in parts:
        kind = part.get_content_type()
        if kind not in ORIGINAL_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        data = part.get_payload(decode=True)
        if isinstance(data, bytes) and data.strip():
            return BytesHeaderParser(policy=policy.compat32).parsebytes(data)
    return None


def _status_blocks(part: Message) -> tuple[_Fields, list[_Fields]]:
    """The per-message block and the per-recipient blocks of a delivery-status part."""
    payload = part.get_payload()
    if part.get_content_type() == "message/delivery-status" and isinstance(payload, list):
        blocks = [_Fields.of(block) for block in payload if isinstance(block, Message)]
    else:
        # Types the email package does not split (global-delivery-status, text/...).
        blocks = [
            _Fields.parse(chunk)
            for chunk in re.split(r"\r?\n[ \t]*\r?\n", _part_text(part).strip())
            if chunk.strip()
        ]
    if not blocks:
        return _Fields(), []
    # The first block is about the message; the rest, one per recipient. Some servers run
    # them together: a first block carrying Action is then a recipient block too.
    first, rest = blocks[0], blocks[1:]
    if first.get("Action") and not rest:
        return first, [first]
    return first, [block for block in rest if block.get("Action") or block.get("Status")]


def _feedback_fields(part: Message) -> _Fields:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return _Fields.of(payload[0])
    return _Fields.parse(_part_text(part))


def _part_text(part: Message) -> str:
    """A leaf part's content as text, transfer encoding undone."""
    payload = part.get_payload()
    if isinstance(payload, list):
        # message/* types are parsed as an attached message: take its bytes back.
        data = b"".join(sub.as_bytes() for sub in payload if isinstance(sub, Message))
    else:
        decoded = part.get_payload(decode=True)
        data = decoded if isinstance(decoded, bytes) else str(payload).encode("utf-8", "replace")
    return data.decode("utf-8", "replace")


def _recipient(block: _Fields) -> RecipientStatus:
    action = block.get("Action").lower().split(" ")[0] if block.get("Action") else ""
    diagnostic = block.get("Diagnostic-Code")
    status = effective_status(block.get("Status"), diagnostic)
    if action == "failed" and status is None:
        raise Unparseable("a failed recipient without a status code")
    return RecipientStatus(
        action=action,
        status=status or "",
        diagnostic=diagnostic,
        final_recipient=_field_address(block.get("Final-Recipient")),
        original_recipient=_field_address(block.get("Original-Recipient")),
    )


def effective_status(status_field: str, diagnostic: str) -> str | None:
    """The X.Y.Z code of a recipient: its Status, made precise by the server's own reply.

    Exim and others report ``Status: 5.0.0`` and put the remote server's real code in
    Diagnostic-Code (``smtp; 550 5.1.1 ...``); a missing Status falls back to that code,
    then to the bare SMTP reply code (550 -> 5.0.0).
    """
    given = _STATUS.search(status_field or "")
    said = _STATUS.search(_diagnostic_text(diagnostic))
    if given:
        vague = given.group(2) == "0" and given.group(3) == "0"
        if vague and said and said.group(1) == given.group(1):
            return said.group(0)
        return given.group(0)
    if said:
        return said.group(0)
    reply = _REPLY_CODE.search(_diagnostic_text(diagnostic))
    return f"{reply.group(1)}.0.0" if reply else None


def _diagnostic_text(diagnostic: str) -> str:
    """The text after the diagnostic type (``smtp;``)."""
    kind, sep, rest = diagnostic.partition(";")
    return rest if sep and len(kind) < 20 else diagnostic


def classify(status: str, diagnostic: str = "") -> BounceKind | None:
    """The kind of a failed recipient's X.Y.Z status (RFC 3463); None for a success code."""
    found = _STATUS.fullmatch(status.strip())
    if found is None:
        return None
    klass, subject, detail = (int(part) for part in found.groups())
    if klass == 2:
        return None
    if subject in (6, 7) or (subject, detail) in ((1, 7), (1, 8), (2, 3), (3, 4)):
        # Content, security or policy, our sender address, our message's size: about us.
        return BounceKind.POLICY
    if (subject, detail) == (2, 2) or klass == 4:
        return BounceKind.SOFT
    if subject == 1 or (subject, detail) == (2, 1):
        return BounceKind.HARD  # bad mailbox, bad domain, null MX, mailbox disabled
    if subject in (0, 5):
        # Vague codes (5.0.0, 5.5.x): the server's words decide, policy first.
        text = _diagnostic_text(diagnostic)
        if _POLICY_TEXT.search(text):
            return BounceKind.POLICY
        if _UNKNOWN_TEXT.search(text):
            return BounceKind.HARD
    return BounceKind.SOFT


def verdict(report: Report) -> Verdict:
    """What a parsed report means for the reader's address, or why nothing is done."""
    if report.form is Form.OTHER:
        return Verdict(None, reason=report.note)
    if report.form is Form.ARF:
        feedback_type = report.feedback_type or ""
        text = clean(f"Feedback-Type: {feedback_type}; {report.user_agent}".rstrip("; "))
        if feedback_type in COMPLAINT_TYPES:
            return Verdict(BounceKind.COMPLAINT, diagnostic=text)
        if feedback_type == "auth-failure":
            return Verdict(BounceKind.POLICY, diagnostic=text)
        return Verdict(None, reason=f"feedback report of type {clean(feedback_type, 40)!r}")
    failed = [item for item in report.recipients if item.action == "failed"]
    if not failed:
        actions = {item.action or "none" for item in report.recipients}
        if "delayed" in actions:
            return Verdict(None, reason="a delay notice: the server is still trying")
        return Verdict(None, reason=f"no failed recipient (action {', '.join(sorted(actions))})")
    # One message goes to one reader; should a report list several, the worst one counts.
    ranked = sorted(
        ((classify(item.status, item.diagnostic), item) for item in failed),
        key=lambda pair: _RANK.get(pair[0], 9),
    )
    kind, item = ranked[0]
    if kind is None:
        return Verdict(None, reason=f"a failure with a success code {item.status}")
    return Verdict(
        kind,
        status=item.status,
        diagnostic=clean(redact(_diagnostic_text(item.diagnostic).strip())),
        recipient=item.final_recipient or item.original_recipient,
    )


_RANK: dict[BounceKind | None, int] = {BounceKind.HARD: 0, BounceKind.SOFT: 1, BounceKind.POLICY: 2}


def _addresses(message: Message, names: tuple[str, ...]) -> Iterator[str]:
    """The addr-specs in the given header fields, in order, without duplicates."""
    seen: set[str] = set()
    for name in names:
        values = [str(value) for value in message.get_all(name, [])]
        for _, addr in getaddresses(values):
            addr = addr.strip()
            if addr and "@" in addr and addr.lower() not in seen:
                seen.add(addr.lower())
                yield addr


def _field_address(value: str | None) -> str:
    """The address of a DSN/ARF address field (``rfc822; someone@example.net``)."""
    if not value:
        return ""
    kind, sep, rest = value.partition(";")
    text = rest if sep else kind
    found = getaddresses([text.strip()])
    return found[0][1].strip() if found and "@" in found[0][1] else ""


def _message_id(value: str | None) -> str | None:
    """A Message-ID as ``<...>``, or None."""
    if not value:
        return None
    found = re.search(r"<[^<>\s]+>", str(value))
    return found.group(0) if found else None


def split_mbox(lines: Iterable[bytes], max_bytes: int) -> Iterator[bytes | None]:
    """The messages of an mbox stream, ``>From`` lines unescaped; None for one over max_bytes."""
    current: list[bytes] = []
    size, started, too_big = 0, False, False
    for line in lines:
        if line.startswith(b"From "):
            if started:
                yield None if too_big else _joined(current)
            current, size, started, too_big = [], 0, True, False
            continue
        if not started or too_big:
            continue
        if line.startswith(b">") and line.lstrip(b">").startswith(b"From "):
            line = line[1:]
        size += len(line)
        if size > max_bytes:
            current, too_big = [], True
            continue
        current.append(line)
    if started:
        yield None if too_big else _joined(current)


def _joined(lines: list[bytes]) -> bytes:
    # The blank line before the next "From " separates messages; it is not part of this one.
    if lines and not lines[-1].strip():
        lines = lines[:-1]
    return b"".join(lines)
