"""A real SMTP server on loopback for tests, built on aiosmtpd, with switchable faults.

Start one::

    server = SMTPTestServer(security="none" | "starttls" | "tls", certificate=cert,
                            auth=("user", "password"), auth_mechanisms=("PLAIN",),
                            smtputf8=True)
    server.start()  # binds 127.0.0.1 on a free port: server.host, server.port
    ...
    server.stop()   # or: with SMTPTestServer(...) as server: ...

``security`` is what the server offers: nothing, STARTTLS (required before MAIL), or
implicit TLS from the first byte. TLS needs a ``Certificate``; ``make_certificate(dir)``
writes a self-signed one (for 127.0.0.1 and localhost unless told otherwise) whose
``cert_file`` a client trusts through ``SMTP_CA_FILE``. AUTH (PLAIN and LOGIN, or only
``auth_mechanisms``) is offered only over TLS (aiosmtpd's ``auth_require_tls``; never on a
plain connection).
``smtputf8=False`` stops advertising and accepting SMTPUTF8; ``pipelining=False`` stops
advertising PIPELINING (RFC 2920), so clients fall back to one command per round trip.

What it saw:

- ``server.messages``: every accepted message as a ``ReceivedMessage`` (``mail_from``,
  ``rcpt_tos``, raw ``data`` bytes exactly as received, ``smtputf8``, ``mail_options``,
  ``tls``, ``login``, ``connection`` number; ``.parsed()`` gives an EmailMessage and
  ``.header(name)`` one decoded header value);
- ``server.wait_for(count, timeout=30)``: block until that many messages arrived;
- ``server.connections``: connections accepted; ``server.logins``: (mechanism, user)
  of successful AUTHs; ``server.events``: (connection, verb) for CONNECT, EHLO,
  STARTTLS, MAIL, RCPT, DATA, RSET, QUIT, in order.

Faults, for the next connections or transactions::

    server.fail("rcpt", "451 4.7.1 Greylisted", times=1)        # 451 once, then 250
    server.fail("rcpt", "550 5.1.1 No such user", recipients={"gone@example.org"})
    server.fail("data", "554 5.7.1 Rejected")                   # after the content
    server.fail("data", DROP)    # close the connection in the middle of DATA
    server.fail("data", LOSE_REPLY)  # keep the message, hang up before replying to it
    server.fail("mail", HANG)    # never answer MAIL: the client's timeout must fire
    server.fail("connect", HANG) # never send the greeting
    server.fail("mail", "452 4.3.1 Slow down", after=2, times=1)  # the third MAIL only

Stages are ``connect`` (before the greeting), ``mail``, ``rcpt`` and ``data``; the action is
an SMTP reply line, ``DROP``, ``HANG`` or (for ``data``)
``LOSE_REPLY``. ``recipients`` limits a fault to transactions
for those addresses (RCPT: that address; DATA: any accepted recipient); ``times`` limits
how often it fires (default: every time) and ``after`` lets that many matching commands
pass first. The first matching fault wins;
``clear_faults()`` removes them and ``reset()`` also forgets messages and counters.

Settings for the app under test: ``server.app_config(**overrides)`` gives the
``MAIL_BACKEND``/``SMTP_*`` mapping for ``create_app`` or ``SMTPBackend``, and
``server.environ()`` the same as ``NEWSLETTER_*`` variables for another process.

Fixtures (registered in tests/conftest.py): ``smtp_server`` (a started plain server, one
per test), ``smtp_server_factory`` (call it with the keyword arguments above; stopped
after the test), ``tls_certificate`` (session-wide self-signed certificate) and
``backend_for`` (``backend_for(server, **overrides)``: an SMTPBackend, closed after the test).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from newsletter.mail.smtp import SMTPBackend

HOST = "127.0.0.1"
DROP = "drop"
HANG = "hang"
# DATA only: keep the message, then hang up instead of replying to its final dot.
LOSE_REPLY = "lose-reply"

Security = Literal["none", "starttls", "tls"]
Stage = Literal["connect", "mail", "rcpt", "data"]


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path


def make_certificate(
    directory: Path,
    *,
    dns_names: Collection[str] = ("localhost",),
    ip_addresses: Collection[str] = (HOST,),
) -> Certificate:
    """Write a fresh self-signed server certificate and its key into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "newsletter test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    found = Certificate(cert_file=directory / "cert.pem", key_file=directory / "key.pem")
    found.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    found.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return found


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted, as it arrived on the wire."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    smtputf8: bool
    mail_options: list[str]
    tls: bool
    login: str | None
    connection: int

    def parsed(self) -> EmailMessage:
        """The message parsed by the email package (raw UTF-8 headers come back escaped)."""
        parsed: EmailMessage = message_from_bytes(self.data, policy=policy.default)
        return parsed

    def header(self, name: str) -> str:
        """One header's decoded value, from RFC 2047 encoded-words and raw UTF-8 alike."""
        value = self.parsed()[name]
        assert value is not None, f"no {name} header"
        # The bytes parser keeps raw UTF-8 (RFC 6532) as surrogate escapes: undo that.
        return str(value).encode("utf-8", "surrogateescape").decode("utf-8")


@dataclass
class Fault:
    stage: Stage
    action: str
    recipients: frozenset[str] | None = None
    times: int | None = None
    after: int = 0

    def matches(self, stage: Stage, recipients: Collection[str]) -> bool:
        if self.stage != stage or self.times == 0:
            return False
        return self.recipients is None or any(r in self.recipients for r in recipients)


@dataclass
class _State:
    messages: list[ReceivedMessage] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    events: list[tuple[int, str]] = field(default_factory=list)
    connections: int = 0


async def _forever() -> None:
    """Never answer; ends when the connection is lost or the server stops."""
    await asyncio.Event().wait()


class _Connection(SMTP):
    """aiosmtpd's session with the fault points the hooks cannot reach."""

    def __init__(self, owner: SMTPTestServer, number: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        self.number = number
        self.data_reply: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Replies to pipelined commands are written one by one; like a production MTA that
        # flushes them together, do not let Nagle's algorithm hold each for the client's ACK.
        raw = transport.get_extra_info("socket")
        if raw is not None:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    async def _handle_client(self) -> None:
        self.owner._event(self, "CONNECT")
        fault = self.owner._take("connect", ())
        if fault is None:
            await super()._handle_client()
        elif fault.action == HANG:
            await _forever()
        elif fault.action == DROP:
            assert self.transport is not None
            self.transport.close()
        else:
            await self.push(fault.action)
            assert self.transport is not None
            self.transport.close()

    async def smtp_DATA(self, arg: str) -> None:
        envelope = self.envelope
        ready = envelope is not None and bool(envelope.rcpt_tos) and not arg
        fault = self.owner._take("data", envelope.rcpt_tos) if ready and envelope else None
        if fault is None:
            await super().smtp_DATA(arg)  # answers a DATA out of order as aiosmtpd does
        elif fault.action == HANG:
            await _forever()
        elif fault.action == DROP:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\r\n")
            assert self.transport is not None
            self.transport.close()
        else:
            self.data_reply = fault.action  # answered once the content is in
            await super().smtp_DATA(arg)

    def is_tls(self) -> bool:
        return self.transport is not None and bool(self.transport.get_extra_info("ssl_object"))


class _Handler:
    def __init__(self, owner: SMTPTestServer) -> None:
        self.owner = owner

    async def handle_EHLO(
        self, server: _Connection, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:  # fmt: skip
        session.host_name = hostname
        self.owner._event(server, "EHLO")
        if self.owner.pipelining:
            # aiosmtpd reads commands one by one from its buffer, so it serves pipelined
            # clients; it just does not say so. Real relays (Postfix, Exim) do.
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: _Connection, session: Session, envelope: Envelope, address: str,
        options: list[str],
    ) -> str:  # fmt: skip
        self.owner._event(server, "MAIL")
        reply = await self._fault(server, "mail", ())
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: _Connection, session: Session, envelope: Envelope, address: str,
        options: list[str],
    ) -> str:  # fmt: skip
        self.owner._event(server, "RCPT")
        reply = await self._fault(server, "rcpt", (address,))
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: _Connection, session: Session, envelope: Envelope) -> str:
        self.owner._event(server, "DATA")
        reply, server.data_reply = server.data_reply, None
        if reply and reply != LOSE_REPLY:
            return reply
        assert envelope.mail_from is not None and envelope.original_content is not None
        login = session.auth_data if session.authenticated else None
        self.owner._record(
            ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content),
                smtputf8=envelope.smtp_utf8,
                mail_options=list(envelope.mail_options),
                tls=server.is_tls(),
                login=str(login) if login is not None else None,
                connection=server.number,
            )
        )
        if reply == LOSE_REPLY:
            # The message is kept; the reply saying so is lost with the connection.
            assert server.transport is not None
            server.transport.close()
            await _forever()
        return "250 OK: queued"

    async def handle_RSET(self, server: _Connection, session: Session, envelope: Envelope) -> str:
        self.owner._event(server, "RSET")
        return "250 OK"

    async def handle_QUIT(self, server: _Connection, session: Session, envelope: Envelope) -> str:
        self.owner._event(server, "QUIT")
        return "221 Bye"

    def handle_STARTTLS(self, server: _Connection, session: Session, envelope: Envelope) -> bool:
        self.owner._event(server, "STARTTLS")
        return True

    async def _fault(self, server: _Connection, stage: Stage, recipients: Collection[str]) -> str:
        fault = self.owner._take(stage, recipients)
        if fault is None:
            return ""
        if fault.action == DROP:
            assert server.transport is not None
            server.transport.close()
            await _forever()
        if fault.action == HANG:
            await _forever()
        return fault.action


class _Controller(Controller):
    """Listens on an already bound socket, so the port is free of races."""

    def __init__(self, owner: SMTPTestServer, listener: socket.socket, **kwargs: Any) -> None:
        super().__init__(_Handler(owner), hostname=HOST, port=listener.getsockname()[1], **kwargs)
        self.owner = owner
        self.listener = listener

    def _create_server(self) -> Any:
        return self.loop.create_server(
            self._factory_invoker, sock=self.listener, ssl=self.ssl_context
        )

    def factory(self) -> SMTP:
        return self.owner._new_connection(self.handler, self.SMTP_kwargs)


class SMTPTestServer:
    """A recording SMTP server on 127.0.0.1; see the module docstring."""

    host = HOST

    def __init__(
        self,
        *,
        security: Security = "none",
        certificate: Certificate | None = None,
        auth: tuple[str, str] | None = None,
        auth_mechanisms: Collection[str] = ("PLAIN", "LOGIN"),
        smtputf8: bool = True,
        pipelining: bool = True,
        timeout: float = 60,
    ) -> None:
        if security != "none" and certificate is None:
            raise ValueError(f"security={security!r} needs a certificate")
        self.security = security
        self.certificate = certificate
        self.auth = auth
        self.auth_mechanisms = {m.upper() for m in auth_mechanisms}
        self.smtputf8 = smtputf8
        self.pipelining = pipelining
        self.timeout = timeout
        self.port = 0
        self._state = _State()
        self._changed = threading.Condition()
        self._open: list[_Connection] = []
        self._controller: _Controller | None = None

    # ---- running

    def start(self) -> SMTPTestServer:
        listener = socket.create_server((HOST, 0))
        self.port = listener.getsockname()[1]
        context = self._server_tls_context()
        smtp_kwargs: dict[str, Any] = {
            "server_hostname": "smtp.test",
            "enable_SMTPUTF8": self.smtputf8,
            "timeout": self.timeout,
            # aiosmtpd counts only STARTTLS as TLS; under implicit TLS every byte is
            # encrypted already, and requiring STARTTLS there would switch AUTH off.
            "auth_require_tls": self.security != "tls",
            "authenticator": self._authenticate,
        }
        if self.auth is not None:
            excluded = [m for m in ("PLAIN", "LOGIN") if m not in self.auth_mechanisms]
            smtp_kwargs["auth_exclude_mechanism"] = excluded
        if self.security == "starttls":
            smtp_kwargs.update(tls_context=context, require_starttls=True)
        self._controller = _Controller(
            self,
            listener,
            ssl_context=context if self.security == "tls" else None,
            **smtp_kwargs,
        )
        self._controller.start()
        self.reset()  # forget the controller's own start-up probe
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is None:
            return

        def close_all() -> None:
            for connection in self._open:
                if connection.transport is not None:
                    connection.transport.close()

        controller.loop.call_soon_threadsafe(close_all)
        controller.stop()

    def __enter__(self) -> SMTPTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- what it saw

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._changed:
            return list(self._state.messages)

    @property
    def connections(self) -> int:
        with self._changed:
            return self._state.connections

    @property
    def logins(self) -> list[tuple[str, str]]:
        with self._changed:
            return list(self._state.logins)

    @property
    def events(self) -> list[tuple[int, str]]:
        with self._changed:
            return list(self._state.events)

    def verbs(self) -> list[str]:
        """The SMTP verbs seen so far, without connection numbers."""
        return [verb for _, verb in self.events]

    def wait_for(self, count: int = 1, timeout: float = 30.0) -> list[ReceivedMessage]:
        """Wait until ``count`` messages arrived; fail the test if they do not."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self._state.messages) >= count, timeout)
            messages = list(self._state.messages)
        if not arrived:
            pytest.fail(f"expected {count} message(s) at the SMTP server, got {len(messages)}")
        return messages

    # ---- behaviour

    def fail(
        self,
        stage: Stage,
        action: str,
        *,
        recipients: Collection[str] | None = None,
        times: int | None = None,
        after: int = 0,
    ) -> None:
        """Add a fault; see the module docstring."""
        if stage not in ("connect", "mail", "rcpt", "data"):
            raise ValueError(f"unknown stage {stage!r}")
        if action == LOSE_REPLY and stage != "data":
            raise ValueError("LOSE_REPLY is a fault of the data stage")
        if action not in (DROP, HANG, LOSE_REPLY) and not action[:3].isdigit():
            raise ValueError(f"{action!r} is neither a reply line nor DROP, HANG or LOSE_REPLY")
        wanted = frozenset(recipients) if recipients is not None else None
        with self._changed:
            self._state.faults.append(Fault(stage, action, wanted, times, after))

    def clear_faults(self) -> None:
        with self._changed:
            self._state.faults.clear()

    def reset(self) -> None:
        """Forget messages, faults and counters (the server keeps running)."""
        with self._changed:
            self._state = _State()

    # ---- settings for the client

    def app_config(self, **overrides: Any) -> dict[str, Any]:
        """Settings that point the app's SMTP backend at this server."""
        config: dict[str, Any] = {
            "MAIL_BACKEND": "smtp",
            "SMTP_HOST": self.host,
            "SMTP_PORT": self.port,
            "SMTP_SECURITY": self.security,
            "SMTP_CA_FILE": str(self.certificate.cert_file) if self.certificate else None,
            "SMTP_USERNAME": self.auth[0] if self.auth else None,
            "SMTP_PASSWORD": self.auth[1] if self.auth else None,
            "SMTP_TIMEOUT": 10.0,
        }
        config.update(overrides)
        return config

    def environ(self, **overrides: Any) -> dict[str, str]:
        """``app_config`` as NEWSLETTER_* environment variables (unset values left out)."""
        env = {}
        for key, value in self.app_config(**overrides).items():
            if value is None:
                continue
            env[f"NEWSLETTER_{key}"] = value if isinstance(value, str) else json.dumps(value)
        return env

    # ---- internals, called from the server's thread

    def _server_tls_context(self) -> ssl.SSLContext | None:
        if self.certificate is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate.cert_file, self.certificate.key_file)
        return context

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.auth is None:
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        if (user, password) != self.auth:
            return AuthResult(success=False, handled=False)
        with self._changed:
            self._state.logins.append((mechanism, user))
        return AuthResult(success=True, auth_data=user)

    def _new_connection(self, handler: Any, smtp_kwargs: dict[str, Any]) -> _Connection:
        with self._changed:
            self._state.connections += 1
            number = self._state.connections
        connection = _Connection(self, number, handler, **smtp_kwargs)
        self._open = [c for c in self._open if c.transport is not None] + [connection]
        return connection

    def _event(self, connection: _Connection, verb: str) -> None:
        with self._changed:
            self._state.events.append((connection.number, verb))

    def _take(self, stage: Stage, recipients: Collection[str]) -> Fault | None:
        with self._changed:
            for fault in self._state.faults:
                if fault.matches(stage, recipients):
                    if fault.after:
                        fault.after -= 1  # this one passes
                        continue
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _record(self, message: ReceivedMessage) -> None:
        with self._changed:
            self._state.messages.append(message)
            self._changed.notify_all()


# ---- fixtures (imported into tests/conftest.py)


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, made for this test run."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server_factory(
    tls_certificate: Certificate,
) -> Iterator[Callable[..., SMTPTestServer]]:
    """Start servers with ``SMTPTestServer``'s keyword arguments; all stop after the test.

    A server with TLS gets ``tls_certificate`` unless given another ``certificate``.
    """
    started: list[SMTPTestServer] = []

    def start(**options: Any) -> SMTPTestServer:
        if options.get("security", "none") != "none":
            options.setdefault("certificate", tls_certificate)
        server = SMTPTestServer(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SMTPTestServer]) -> SMTPTestServer:
    """A started plain SMTP server (no TLS, no AUTH, SMTPUTF8 offered) for one test."""
    return smtp_server_factory()


@pytest.fixture
def backend_for() -> Iterator[Callable[..., SMTPBackend]]:
    """``backend_for(server, **setting_overrides)``: an SMTPBackend, closed after the test."""
    made: list[SMTPBackend] = []

    def make(server: SMTPTestServer, **overrides: Any) -> SMTPBackend:
        backend = SMTPBackend(server.app_config(**overrides))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
