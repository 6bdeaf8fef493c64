"""The hand-written message builder, against the standard library's strict parser.

Names, subjects, addresses and bodies are generated (non-ASCII, very long, holding CR, LF,
encoded-word look-alikes, quotes and angle brackets); each built message is parsed back with
``email.policy.strict``, which raises on any defect, and every header and part must come
back as meant, with no line over 998 octets and no header that was not put there.
"""

from __future__ import annotations

import re
from email import message_from_bytes, message_from_string, policy
from email.header import decode_header, make_header
from email.message import EmailMessage

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.mail.message import SLOT_CLOSE, SLOT_OPEN, ascii_domain, build, mailbox, single_line

# The composer's slot markers are its own business (they never come from outside the
# template); everything else is fair game.
TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",), blacklist_characters=(SLOT_OPEN, SLOT_CLOSE, "\x00")
    ),
    max_size=400,
)
HOSTILE = st.one_of(
    TEXT,
    st.sampled_from(
        [
            "Bcc: victim@example.com",
            "x\r\nBcc: victim@example.com",
            "=?utf-8?q?Bcc=3A_victim=40example=2Ecom?=",
            '"quoted" <angle@brackets>',
            "ünïcödé " * 40,
            "a" * 2000,
            "用" * 400,
            '"' * 500,
            "\\" * 500,
        ]
    ),
)
ATOM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~", min_size=1)
LOCAL = st.one_of(
    st.lists(ATOM, min_size=1, max_size=3).map(".".join).filter(lambda s: len(s) <= 64),
    st.sampled_from(["jürgen", "δοκιμή", "用户", "pat.reader"]),
)
DOMAIN = st.sampled_from(
    ["example.com", "ledger.example", "bücher.example", "例え.テスト", "a" * 60 + ".example"]
)
EXPECTED_HEADERS = {
    "To",
    "Date",
    "Message-ID",
    "From",
    "Subject",
    "MIME-Version",
    "Auto-Submitted",
    "List-Id",
    "Content-Type",
}


def strict(data: bytes, smtputf8: bool) -> EmailMessage:
    """Parse as a receiving server would: 8-bit headers only over SMTPUTF8, as UTF-8."""
    if smtputf8:
        message = message_from_string(data.decode("utf-8"), policy=policy.strict)
    else:
        data.decode("ascii")  # without SMTPUTF8, every byte must be 7-bit
        message = message_from_bytes(data, policy=policy.strict)
    assert isinstance(message, EmailMessage)
    return message


def display_name(field: str) -> str:
    """The phrase of a one-mailbox field, decoded by RFC 2047's rules.

    (The email package's address parser keeps the space between two encoded-words of a
    phrase, which RFC 2047 6.2 says to drop, so the phrase is decoded here instead.)
    """
    phrase = field.rpartition("<")[0].strip()
    if phrase.startswith('"') and phrase.endswith('"'):  # a quoted-string, not encoded
        return re.sub(r"\\(.)", r"\1", phrase[1:-1])
    decoded = str(make_header(decode_header(phrase)))
    return decoded


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=HOSTILE,
    subject=HOSTILE,
    local=LOCAL,
    domain=DOMAIN,
    text=HOSTILE,
    html=HOSTILE,
)
def test_built_messages_parse_back_strictly_with_every_field_intact(
    mail_app: Flask, name: str, subject: str, local: str, domain: str, text: str, html: str
) -> None:
    address = f"{local}@{domain}"
    with mail_app.app_context():
        message = build(to=mailbox(address, name), subject=subject, text=text, html=html)
    data = message.data

    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    parsed = strict(data, message.smtputf8)
    assert set(parsed.keys()) == EXPECTED_HEADERS
    assert all(len(parsed.get_all(field) or []) == 1 for field in EXPECTED_HEADERS)

    assert str(parsed["Subject"]) == single_line(subject)
    [to] = parsed["To"].addresses
    assert to.addr_spec == ascii_domain(address)
    raw_to = data.split(b"\r\nDate: ")[0].decode("utf-8").replace("\r\n", "")
    assert display_name(raw_to.removeprefix("To:")) == single_line(name)
    assert message.recipient == ascii_domain(address)

    assert parsed.get_content_type() == "multipart/alternative"
    plain, rich = parsed.iter_parts()
    assert plain.get_content_type() == "text/plain" and rich.get_content_type() == "text/html"
    assert _lines(plain.get_content()) == _lines(text)
    assert _lines(rich.get_content()) == _lines(html)


def _lines(body: str) -> str:
    """A body with its line ends as LF, however they were written."""
    return body.replace("\r\n", "\n").replace("\r", "\n")
