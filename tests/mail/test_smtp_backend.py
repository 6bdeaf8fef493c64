"""The SMTP backend against a real SMTP server on loopback (tests/support/smtp_server.py).

What is checked is what the relay receives: the bytes, the envelope, whether TLS, AUTH
and SMTPUTF8 were used, and how many connections were opened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from newsletter import create_app
from newsletter.errors import (
    ConfigError,
    MailError,
    MessageNotSendable,
    OutcomeUnknown,
    RecipientRejected,
    TransientMailError,
)
from newsletter.mail.backends import get_backend
from newsletter.mail.message import MessageTemplate, OutgoingMessage, build, mailbox, slot
from newsletter.mail.smtp import SMTPBackend
from tests.conftest import base_config
from tests.support.smtp_server import DROP, HANG, LOSE_REPLY, SMTPTestServer, make_certificate

ServerFactory = Callable[..., SMTPTestServer]
BackendFactory = Callable[..., SMTPBackend]

TEXT = (
    "Today's articles\n\n"
    ".A line that starts with a dot must survive SMTP's dot-stuffing.\n"
    "https://news.example.test/articles/1\n"
)
HTML = "<p>Today's articles</p>\n<p>.A line with a dot</p>\n"


@pytest.fixture(autouse=True)
def _app_context(mail_app: Flask) -> Iterator[None]:
    with mail_app.app_context():
        yield


@pytest.fixture(params=[True, False], ids=["pipelined", "one-command-a-trip"])
def smtp_server(
    request: pytest.FixtureRequest, smtp_server_factory: Callable[..., SMTPTestServer]
) -> SMTPTestServer:
    """Every test here runs against a server with and without PIPELINING (RFC 2920)."""
    return smtp_server_factory(pipelining=request.param)


def message(to: str = "reader@example.org", text: str = TEXT) -> OutgoingMessage:
    return build(to=mailbox(to), subject="Today's news", text=text, html=HTML)


def header_line(data: bytes, name: bytes) -> bytes:
    """The raw (unfolded) header ``name`` from a message's bytes."""
    head = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
    lines = [line for line in head.split(b"\r\n") if line.lower().startswith(name.lower() + b":")]
    assert len(lines) == 1, f"expected one {name!r} header, found {lines!r}"
    return lines[0]


def send_in_thread(backend: SMTPBackend, outgoing: OutgoingMessage) -> BaseException | None:
    """Send from another thread and wait a generous bound, so a hang fails instead of blocking."""
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            backend.send(outgoing)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "send() was still waiting on a silent server after 60s"
    return outcome[0]


# ---- delivery and transport security


def test_plain_delivery_through_the_configured_backend(
    smtp_server: SMTPTestServer, tmp_path: Path
) -> None:
    app = create_app({**base_config("sqlite://", tmp_path), **smtp_server.app_config()})
    with app.app_context():
        outgoing = message()
        with get_backend() as backend:
            assert isinstance(backend, SMTPBackend)
            backend.send(outgoing)

    [received] = smtp_server.messages
    assert received.data == outgoing.data
    assert received.mail_from == "newsletter@ledger.example"
    assert received.rcpt_tos == ["reader@example.org"]
    assert not received.tls and not received.smtputf8 and received.login is None
    plain = received.parsed().get_body(("plain",))
    assert plain is not None and plain.get_content().splitlines() == TEXT.splitlines()
    assert smtp_server.verbs()[-1] == "QUIT"


def test_built_messages_need_no_dot_stuffing_and_arrive_byte_for_byte(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    """The builder promises no line starts with a dot, so the sender skips its scan.

    Dots are put wherever a template or a reader could put them: starting the text, HTML,
    per-reader values and display name, alone on a line, and at every offset of a long
    value, so one lands at the start of each wrapped piece.
    """
    template = MessageTemplate(
        subject=".Subject",
        text=".Lead\n.\n..two\n" + slot("value") + "\n.end",
        html_body="<p>.x</p>\n.\n" + slot("value"),
    )
    outgoing = [
        template.personalize(
            f"reader{shift}@example.org",
            ".Dot Name",
            values={"value": "." * shift + ("a." * 80) + "\n.\n." + "b" * shift},
        )
        for shift in range(80)
    ]
    for built in outgoing:
        assert built.dot_free
        assert not any(line.startswith(b".") for line in built.data.split(b"\r\n"))
    backend = backend_for(smtp_server)
    errors = [error for _, error in backend.send_many((m.recipient, m) for m in outgoing)]
    assert errors == [None] * len(outgoing)
    assert [received.data for received in smtp_server.messages] == [m.data for m in outgoing]
    plain = smtp_server.messages[7].parsed().get_body(("plain",))
    assert plain is not None
    assert plain.get_content().startswith(".Lead\r\n.\r\n..two\r\n.......a.a.")


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_with_the_certificate_trusted_through_ca_file(
    smtp_server_factory: ServerFactory, backend_for: BackendFactory, security: str
) -> None:
    server = smtp_server_factory(security=security)
    outgoing = message()
    backend_for(server).send(outgoing)

    [received] = server.messages
    assert received.tls
    assert received.data == outgoing.data
    if security == "starttls":
        assert server.verbs()[:4] == ["CONNECT", "EHLO", "STARTTLS", "EHLO"]


@pytest.mark.parametrize("security", ["starttls", "tls"])
@pytest.mark.parametrize("trust", ["system-store", "another-ca", "wrong-host-name"])
def test_an_untrusted_certificate_is_refused(
    smtp_server_factory: ServerFactory,
    backend_for: BackendFactory,
    tmp_path: Path,
    security: str,
    trust: str,
) -> None:
    options: dict[str, Any] = {"security": security}
    if trust == "wrong-host-name":
        options["certificate"] = make_certificate(
            tmp_path / "elsewhere", dns_names=["mail.elsewhere.test"], ip_addresses=[]
        )
    server = smtp_server_factory(**options)
    ca_file = {
        "system-store": None,
        "another-ca": str(make_certificate(tmp_path / "other").cert_file),
        "wrong-host-name": str(server.app_config()["SMTP_CA_FILE"]),
    }[trust]
    backend = backend_for(server, SMTP_CA_FILE=ca_file)

    with pytest.raises(ConfigError) as refused:
        backend.send(message())
    assert refused.value.setting == "NEWSLETTER_SMTP_CA_FILE"
    assert server.messages == []
    assert "MAIL" not in server.verbs()


@pytest.mark.parametrize("security", ["starttls", "tls"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_over_tls(
    smtp_server_factory: ServerFactory,
    backend_for: BackendFactory,
    security: str,
    mechanism: str,
) -> None:
    server = smtp_server_factory(
        security=security, auth=("mailer", "s3cret pass"), auth_mechanisms=[mechanism]
    )
    backend_for(server).send(message())

    assert server.logins == [(mechanism, "mailer")]
    [received] = server.messages
    assert received.tls and received.login == "mailer"


def test_a_wrong_password_is_a_config_error(
    smtp_server_factory: ServerFactory, backend_for: BackendFactory
) -> None:
    server = smtp_server_factory(security="starttls", auth=("mailer", "right"))
    backend = backend_for(server, SMTP_PASSWORD="wrong")

    with pytest.raises(ConfigError) as refused:
        backend.send(message())
    assert refused.value.setting == "NEWSLETTER_SMTP_USERNAME"
    assert server.logins == [] and server.messages == []


def test_auth_without_tls_is_refused_before_connecting(
    smtp_server: SMTPTestServer, tmp_path: Path
) -> None:
    settings = smtp_server.app_config(SMTP_USERNAME="mailer", SMTP_PASSWORD="secret")
    assert settings["SMTP_SECURITY"] == "none"

    with pytest.raises(ConfigError) as by_backend:
        SMTPBackend(settings)
    with pytest.raises(ConfigError) as by_app:
        create_app({**base_config("sqlite://", tmp_path), **settings})

    assert by_backend.value.setting == by_app.value.setting == "NEWSLETTER_SMTP_SECURITY"
    assert smtp_server.connections == 0


def test_starttls_required_but_not_offered_is_refused(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    backend = backend_for(smtp_server, SMTP_SECURITY="starttls")

    with pytest.raises(ConfigError) as refused:
        backend.send(message())
    assert refused.value.setting == "NEWSLETTER_SMTP_SECURITY"
    assert smtp_server.verbs() == ["CONNECT", "EHLO"]  # nothing sent in plaintext
    assert smtp_server.messages == []


def test_one_connection_carries_many_messages(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    sent = [message(f"reader{n}@example.org") for n in range(5)]
    with backend_for(smtp_server) as backend:
        for outgoing in sent:
            backend.send(outgoing)

    assert [m.data for m in smtp_server.messages] == [m.data for m in sent]
    assert smtp_server.connections == 1
    assert {m.connection for m in smtp_server.messages} == {1}


# ---- replies, drops and silence


@pytest.mark.parametrize(
    ("stage", "reply", "error"),
    [
        ("rcpt", "451 4.7.1 Greylisted, try again later", TransientMailError),
        ("rcpt", "550 5.1.1 No such user here", RecipientRejected),
        ("data", "452 4.3.1 Insufficient system storage", TransientMailError),
        ("data", "554 5.7.1 Message refused", RecipientRejected),
    ],
)
def test_a_refusal_names_its_kind_and_the_connection_carries_on(
    smtp_server: SMTPTestServer,
    backend_for: BackendFactory,
    stage: str,
    reply: str,
    error: type[MailError],
) -> None:
    smtp_server.fail(stage, reply, recipients={"refused@example.org"})  # type: ignore[arg-type]
    backend = backend_for(smtp_server)

    with pytest.raises(error) as failed:
        backend.send(message("refused@example.org"))
    assert type(failed.value) is error
    assert failed.value.code == int(reply[:3])
    assert reply[4:] in str(failed.value)

    accepted = message("next@example.org")
    backend.send(accepted)
    assert [m.data for m in smtp_server.messages] == [accepted.data]
    assert smtp_server.connections == 1


def test_a_4xx_then_250_delivers_on_retry(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    smtp_server.fail("rcpt", "451 4.7.1 Greylisted, try again later", times=1)
    backend = backend_for(smtp_server)
    outgoing = message()

    with pytest.raises(TransientMailError):
        backend.send(outgoing)
    backend.send(outgoing)

    assert [m.data for m in smtp_server.messages] == [outgoing.data]
    assert "RSET" in smtp_server.verbs()  # the refused transaction was reset, not left open


def test_a_refused_sender_is_not_blamed_on_the_reader(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    smtp_server.fail("mail", "550 5.7.1 Sender not allowed", times=1)

    with pytest.raises(TransientMailError) as failed:
        backend_for(smtp_server).send(message())
    assert not isinstance(failed.value, RecipientRejected)
    assert smtp_server.messages == []


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_a_421_closing_the_connection_makes_the_next_send_reconnect(
    smtp_server: SMTPTestServer, backend_for: BackendFactory, stage: str
) -> None:
    # 421 means the server is closing the channel; smtplib closes its socket on it.
    smtp_server.fail(stage, "421 4.7.0 Too many connections, closing", times=1)  # type: ignore[arg-type]
    backend = backend_for(smtp_server)

    with pytest.raises(TransientMailError):
        backend.send(message())
    delivered = message()
    backend.send(delivered)

    assert [m.data for m in smtp_server.messages] == [delivered.data]
    assert smtp_server.connections == 2


def test_a_connection_dropped_after_the_whole_message_is_unknown_and_the_next_send_reconnects(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    # The client wrote the whole message, final dot included, before the server hung up:
    # it cannot tell a server that read it all from one that did not (RFC 1047).
    smtp_server.fail("data", DROP, times=1)
    backend = backend_for(smtp_server)

    with pytest.raises(OutcomeUnknown):
        backend.send(message("first@example.org"))
    delivered = message("second@example.org")
    backend.send(delivered)

    assert [m.data for m in smtp_server.messages] == [delivered.data]
    assert [m.connection for m in smtp_server.messages] == [2]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-command-a-trip"])
def test_a_message_kept_whose_reply_was_lost_is_unknown_not_failed(
    smtp_server_factory: Callable[..., SMTPTestServer],
    backend_for: BackendFactory,
    pipelining: bool,
) -> None:
    server = smtp_server_factory(pipelining=pipelining)
    server.fail("data", LOSE_REPLY, times=1)
    backend = backend_for(server)

    kept = message("kept@example.org")
    with pytest.raises(OutcomeUnknown) as lost:
        backend.send(kept)
    assert "may have accepted it" in str(lost.value)
    assert not isinstance(lost.value, TransientMailError)  # nothing may retry it unasked
    # The server did keep it, and the backend goes on with a new connection.
    backend.send(message("next@example.org"))
    assert [m.rcpt_tos for m in server.messages] == [["kept@example.org"], ["next@example.org"]]
    assert [m.connection for m in server.messages] == [1, 2]


@pytest.mark.parametrize("stage", ["connect", "mail", "data"])
def test_a_server_that_never_answers_times_out(
    smtp_server: SMTPTestServer, backend_for: BackendFactory, stage: str
) -> None:
    smtp_server.fail(stage, HANG)  # type: ignore[arg-type]
    backend = backend_for(smtp_server, SMTP_TIMEOUT=1.0)

    failure = send_in_thread(backend, message())
    assert isinstance(failure, TransientMailError), failure
    assert smtp_server.messages == []

    smtp_server.clear_faults()
    delivered = message()
    assert send_in_thread(backend, delivered) is None
    assert [m.data for m in smtp_server.messages] == [delivered.data]


# ---- international addresses and 8-bit content (RFC 6531 SMTPUTF8)


def test_a_non_ascii_local_part_goes_over_smtputf8(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    outgoing = message("jürgen@example.org")
    backend_for(smtp_server).send(outgoing)

    [received] = smtp_server.messages
    assert received.smtputf8 and "SMTPUTF8" in received.mail_options
    assert received.rcpt_tos == ["jürgen@example.org"]
    assert received.data == outgoing.data
    to_line = header_line(received.data, b"To")
    assert to_line == "To: jürgen@example.org".encode()
    assert b"=?" not in to_line
    assert received.header("To") == "jürgen@example.org"


def test_a_non_ascii_local_part_is_not_sendable_without_smtputf8(
    smtp_server_factory: ServerFactory, backend_for: BackendFactory
) -> None:
    server = smtp_server_factory(smtputf8=False)
    backend = backend_for(server)

    with pytest.raises(MessageNotSendable):
        backend.send(message("jürgen@example.org"))
    assert "MAIL" not in server.verbs()

    delivered = message("reader@example.org")
    backend.send(delivered)  # the connection carries on for the next reader
    assert [m.data for m in server.messages] == [delivered.data]
    assert server.connections == 1


@pytest.mark.parametrize("smtputf8", [True, False])
def test_an_international_domain_is_sent_in_its_ascii_form(
    smtp_server_factory: ServerFactory, backend_for: BackendFactory, smtputf8: bool
) -> None:
    # Signup stores "user@bücher.example" (email-validator keeps the Unicode domain).
    server = smtp_server_factory(smtputf8=smtputf8)
    outgoing = message("reader@bücher.example")
    backend_for(server).send(outgoing)

    [received] = server.messages
    assert received.rcpt_tos == ["reader@xn--bcher-kva.example"]
    assert header_line(received.data, b"To") == b"To: reader@xn--bcher-kva.example"
    assert not received.smtputf8


def test_non_ascii_content_arrives_intact_and_7bit_clean(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    outgoing = build(
        to=mailbox("reader@example.org"),
        subject="Grüße & Neuigkeiten",
        text="Grüße aus der Redaktion\nhttps://news.example.test/a/1\n",
        html="<p>Grüße aus der Redaktion</p>",
    )
    backend_for(smtp_server).send(outgoing)

    [received] = smtp_server.messages
    assert received.data == outgoing.data
    # 8-bit data would have to be declared (BODY=8BITMIME, RFC 6152); none is sent.
    assert received.data.isascii() and not received.smtputf8
    assert received.header("Subject") == "Grüße & Neuigkeiten"
    plain = received.parsed().get_body(("plain",))
    assert plain is not None
    assert plain.get_content().splitlines()[0] == "Grüße aus der Redaktion"
