"""The SMTP backend: TLS with certificate checks, AUTH only over TLS, one reused connection."""

from __future__ import annotations

import contextlib
import functools
import re
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from newsletter.errors import (
    ConfigError,
    MailError,
    MessageNotSendable,
    NotHandedOver,
    OutcomeUnknown,
    RecipientRejected,
    TransientMailError,
)
from newsletter.mail.backends import Key, MailBackend
from newsletter.mail.message import OutgoingMessage


def classify_reply(code: int, text: str) -> MailError:
    """Map an SMTP reply to our error: 4xx transient, 5xx a rejection of the recipient."""
    if 400 <= code < 500:
        return TransientMailError(f"{code} {text}", code)
    if 500 <= code < 600:
        return RecipientRejected(f"{code} {text}", code)
    return TransientMailError(f"unexpected reply {code} {text}", code)


Item = TypeVar("Item")

_LEADING_DOT = re.compile(rb"(?m)^\.")


class _Open:
    """The server answered DATA with 354: the message's content may follow."""


class _Restart:
    """The connection closed under a pipelined envelope: begin that message again."""


OPEN = _Open()
RESTART = _Restart()


def _envelope(message: OutgoingMessage, options: list[str]) -> bytes:
    extra = "".join(f" {option}" for option in options)
    commands = f"MAIL FROM:<{message.sender}>{extra}\r\nRCPT TO:<{message.recipient}>\r\nDATA\r\n"
    return commands.encode("utf-8" if options else "ascii")


def _check_envelope(connection: smtplib.SMTP, message: OutgoingMessage) -> None:
    """Read the replies to a pipelined MAIL, RCPT and DATA (RFC 2920).

    Failures raise the exceptions smtplib's own ``sendmail`` raises, so callers handle both
    paths alike.
    """
    mail, rcpt, data = connection.getreply(), connection.getreply(), connection.getreply()
    if mail[0] == 250 and rcpt[0] in (250, 251) and data[0] == 354:
        return
    if data[0] == 354:
        # A server that opened DATA after refusing the envelope must not get a message:
        # hanging up abandons the transaction.
        connection.close()
    else:
        _reset(connection, mail, rcpt, data)
    if mail[0] != 250:
        raise smtplib.SMTPSenderRefused(mail[0], mail[1], message.sender)
    if rcpt[0] not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({message.recipient: rcpt})
    raise smtplib.SMTPDataError(data[0], data[1])


def _open_one_by_one(
    connection: smtplib.SMTP, message: OutgoingMessage, options: list[str]
) -> None:
    """MAIL, RCPT and DATA each awaiting its reply, for a server without PIPELINING.

    Not smtplib's ``sendmail``: it sends the content and reads its reply in one call, so a
    connection lost before the content and one lost after its final dot would look alike.
    """
    mail = connection.mail(message.sender, options)
    if mail[0] != 250:
        _reset(connection, mail)
        raise smtplib.SMTPSenderRefused(mail[0], mail[1], message.sender)
    rcpt = connection.rcpt(message.recipient)
    if rcpt[0] not in (250, 251):
        _reset(connection, rcpt)
        raise smtplib.SMTPRecipientsRefused({message.recipient: rcpt})
    connection.putcmd("data")
    data = connection.getreply()
    if data[0] != 354:
        _reset(connection, data)
        raise smtplib.SMTPDataError(data[0], data[1])


class _CutShort(Exception):
    """A write that failed after ``sent`` of its bytes had been handed to the kernel."""

    def __init__(self, sent: int, error: OSError) -> None:
        super().__init__(str(error))
        self.sent = sent
        self.error = error


def _send_counting(connection: smtplib.SMTP, data: bytes) -> None:
    """``sendall``, but a failure says how far it got: bytes past a final dot matter."""
    sock = connection.sock
    if sock is None:
        raise _CutShort(0, smtplib.SMTPServerDisconnected("please run connect() first"))
    view, sent = memoryview(data), 0
    try:
        while sent < len(data):
            sent += sock.send(view[sent:])
    except OSError as exc:
        raise _CutShort(sent, exc) from exc


def _content(message: OutgoingMessage, then: bytes = b"") -> bytes:
    """The message as sent after DATA: dot-stuffed, ending with the lone dot; then ``then``."""
    body = message.data
    # A plain search is far cheaper than the regex, and skipping it cheaper still: for a
    # digest the search alone cost more than signing its two links.
    if not message.dot_free and (body.startswith(b".") or b"\n." in body):
        body = _LEADING_DOT.sub(b"..", body)
    end = b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n"
    return b"".join((body, end, then))  # one copy of the body, not one per piece


class _Ahead(Generic[Item]):
    """An iterator that can take its next item early and give it back later.

    An exception raised while taking early is raised where that item would have been taken,
    after the outcomes that came before it.
    """

    def __init__(self, items: Iterator[Item]) -> None:
        self._items = items
        self._taken: list[Item | BaseException | None] = []

    def __iter__(self) -> _Ahead[Item]:
        return self

    def __next__(self) -> Item:
        item = self._taken.pop() if self._taken else next(self._items, None)
        if item is None:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def take(self) -> None:
        if not self._taken:
            try:
                self._taken.append(next(self._items, None))
            except Exception as exc:  # raised in its turn, by __next__
                self._taken.append(exc)

    def held(self) -> list[Item]:
        """The item taken early, if any (it is no longer held)."""
        if not self._taken or self._taken[-1] is None:
            return []
        item = self._taken[-1]
        if isinstance(item, BaseException):
            return []
        self._taken.pop()
        return [item]


def _nobody(key: object) -> None:
    """No journal to tell."""


def _vanished(outcome: object) -> bool:
    """A failure with no reply at all: refused, dropped or timed out."""
    if isinstance(outcome, OutcomeUnknown):
        return True
    return isinstance(outcome, TransientMailError) and outcome.code is None


def _reset(connection: smtplib.SMTP, *replies: tuple[int, bytes]) -> None:
    """After a refusal: hang up on a 421 as smtplib does, otherwise RSET for the next message."""
    if any(code == 421 for code, _ in replies):
        connection.close()
        return
    with contextlib.suppress(smtplib.SMTPServerDisconnected):
        connection.rset()


def _reply_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:500]


class SMTPBackend(MailBackend):
    """Sends through an SMTP relay, keeping the connection open across messages."""

    parallel = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.host = str(config["SMTP_HOST"])
        self.port = int(config["SMTP_PORT"])
        self.security = str(config["SMTP_SECURITY"])
        self.username = config.get("SMTP_USERNAME") or None
        self.password = config.get("SMTP_PASSWORD") or ""
        self.timeout = float(config["SMTP_TIMEOUT"])
        self.local_hostname = config.get("SMTP_LOCAL_HOSTNAME") or None
        if self.username and self.security == "none":
            raise ConfigError("NEWSLETTER_SMTP_SECURITY", "AUTH is only sent over TLS")
        self._connection: smtplib.SMTP | None = None

    def _tls_context(self) -> ssl.SSLContext:
        # Certificates and host names are always checked; a private CA can be trusted explicitly.
        return ssl.create_default_context(cafile=self.config.get("SMTP_CA_FILE") or None)

    def open(self) -> None:
        if self._connection is not None:
            return
        try:
            self._connection = self._connect()
        except smtplib.SMTPAuthenticationError as exc:
            raise ConfigError(
                "NEWSLETTER_SMTP_USERNAME", f"the server refused the login: {exc.smtp_code}"
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise ConfigError("NEWSLETTER_SMTP_SECURITY", str(exc)) from exc
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(
                "NEWSLETTER_SMTP_CA_FILE", f"the server's certificate was not trusted: {exc}"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise TransientMailError(
                f"connecting: {exc.smtp_code} {_reply_text(exc.smtp_error)}", exc.smtp_code
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientMailError(f"connecting to {self.host}:{self.port}: {exc}") from exc

    def _connect(self) -> smtplib.SMTP:
        connection: smtplib.SMTP
        if self.security == "tls":
            connection = smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
                context=self._tls_context(),
            )
        else:
            connection = smtplib.SMTP(
                self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
            )
        try:
            # Pipelined writes end in small pieces (an envelope after a message); Nagle's
            # algorithm would hold each one for the previous write's delayed ACK.
            if connection.sock is not None:
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.ehlo()
            if self.security == "starttls":
                if not connection.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError(
                        "the server does not offer STARTTLS; refusing to send in plaintext"
                    )
                connection.starttls(context=self._tls_context())
                connection.ehlo()
            if self.username:
                connection.login(str(self.username), str(self.password))
        except BaseException:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.quit()
        except (smtplib.SMTPException, OSError):
            connection.close()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _forget_if_closed(self, connection: smtplib.SMTP) -> None:
        if connection.sock is None and self._connection is connection:
            self._connection = None

    def send(self, message: OutgoingMessage) -> None:
        for _, error in self.send_many([(None, message)]):
            if error is not None:
                raise error

    def send_many(
        self,
        items: Iterable[tuple[Key, OutgoingMessage]],
        offered: Callable[[Key], object] | None = None,
    ) -> Iterator[tuple[Key, MailError | None]]:
        """One round trip per message where the server offers PIPELINING.

        Each message's content goes out in the same write as the next message's MAIL, RCPT
        and DATA (RFC 2920 lets content start a command group), so the reply to one message's
        final dot and the replies to the next envelope come back together. Only envelopes
        travel ahead: a message's content is sent once the server has said 354 to it.

        While the server reads a message, the one after next is taken from ``items`` (for a
        digest, composed), so the content to send when the replies arrive is already there.

        ``offered`` hears of each message when its envelope goes out: from then until its
        outcome, it is one of the (at most two) messages a lost connection leaves uncertain.
        """
        tell: Callable[[Key], object] = offered if offered is not None else _nobody
        ahead: _Ahead[tuple[Key, OutgoingMessage]] = _Ahead(iter(items))
        opened: tuple[Key, OutgoingMessage] | None = None
        try:
            for key, message in ahead:
                state: _Open | MailError | None
                if opened is None:
                    state = self._start(message, functools.partial(tell, key))
                else:
                    previous_key, previous = opened
                    tell(key)
                    outcome, after = self._finish_and_start(previous, message, ahead.take)
                    # While the caller holds this outcome, ``message`` may be the one with
                    # DATA open: if the caller stops here, ``finally`` must hang up.
                    opened = (key, message) if isinstance(after, _Open) else None
                    yield previous_key, outcome
                    opened = None
                    state = (
                        self._start(message, functools.partial(tell, key))
                        if isinstance(after, _Restart)
                        else after
                    )
                if isinstance(state, _Open):
                    opened = (key, message)
                    continue
                yield key, state
                if _vanished(state):
                    # The server went away without a word: the message taken ahead is handed
                    # back rather than tried on a new connection, as the caller does with
                    # the ones it has not given yet.
                    for held_key, _ in ahead.held():
                        yield held_key, NotHandedOver("not sent: the connection was lost before it")
            if opened is not None:
                key, message = opened
                opened = None
                yield key, self._finish(message)
        finally:
            if opened is not None:
                # Closed early with DATA open: hanging up abandons the transaction unsent.
                self._drop()

    def _options(self, message: OutgoingMessage) -> list[str] | MailError:
        assert self._connection is not None
        if not message.smtputf8:
            return []
        if not self._connection.has_extn("smtputf8"):
            return MessageNotSendable("the address needs SMTPUTF8 and the server does not offer it")
        return ["SMTPUTF8"]

    def _start(
        self, message: OutgoingMessage, announce: Callable[[], object] = lambda: None
    ) -> _Open | MailError | None:
        """Begin a transaction: OPEN once the server awaits the content, else the outcome.

        ``announce`` runs once the connection is up, just before the envelope goes out.
        """
        try:
            self.open()
        except MailError as exc:
            return exc
        connection = self._connection
        assert connection is not None
        options = self._options(message)
        if isinstance(options, MailError):
            return options
        announce()
        try:
            if connection.has_extn("pipelining"):
                connection.send(_envelope(message, options))
                _check_envelope(connection, message)
                return OPEN
            _open_one_by_one(connection, message, options)
        except (smtplib.SMTPException, OSError) as exc:
            return self._translate(exc, connection)
        # Without pipelining nothing may follow the content before its reply: finish now.
        return self._finish(message)

    def _finish(self, message: OutgoingMessage) -> MailError | None:
        """Send an open transaction's content and read the verdict on it."""
        connection = self._connection
        assert connection is not None
        try:
            connection.send(_content(message))
        except (smtplib.SMTPException, OSError) as exc:
            return self._translate(exc, connection)
        try:
            code, text = connection.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            return self._unknown(exc)
        return self._verdict(code, text)

    def _unknown(self, exc: BaseException) -> OutcomeUnknown:
        """No reply to a final dot the server has been sent: it may have kept the message."""
        self._drop()
        why = f"no answer within {self.timeout:g}s" if isinstance(exc, TimeoutError) else str(exc)
        return OutcomeUnknown(
            f"no reply after the whole message was sent ({why}): the server may have "
            "accepted it (RFC 1047), so it is not sent again unless an operator re-offers it"
        )

    def _verdict(self, code: int, text: bytes) -> MailError | None:
        """The reply to a final dot; it ends the transaction either way, so no RSET follows."""
        if code == 250:
            return None
        if code == 421:
            self._drop()
        return classify_reply(code, _reply_text(text))

    def _finish_and_start(
        self,
        previous: OutgoingMessage,
        message: OutgoingMessage,
        meanwhile: Callable[[], None] = lambda: None,
    ) -> tuple[MailError | None, _Open | _Restart | MailError | None]:
        """Send ``previous``'s content with ``message``'s envelope; ``meanwhile`` runs while
        the server reads them."""
        connection = self._connection
        assert connection is not None
        options = self._options(message)
        if isinstance(options, MailError):
            return self._finish(previous), options
        envelope = _envelope(message, options)
        data = _content(previous, then=envelope)
        try:
            _send_counting(connection, data)
        except _CutShort as cut:
            not_sent = NotHandedOver(
                f"not sent: the connection failed on the message before it ({cut.error})"
            )
            if cut.sent >= len(data) - len(envelope):
                # The final dot had gone (the write failed on the envelope behind it).
                return self._unknown(cut.error), not_sent
            return self._translate(cut.error, connection), not_sent
        meanwhile()
        try:
            code, text = connection.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            return self._unknown(exc), NotHandedOver(
                f"not sent: the connection failed on the message before it ({exc})"
            )
        outcome = self._verdict(code, text)
        if self._connection is None:
            # A 421 closed the channel under the pipelined envelope: start over on a new one.
            return outcome, RESTART
        try:
            _check_envelope(connection, message)
        except (smtplib.SMTPException, OSError) as exc:
            return outcome, self._translate(exc, connection)
        return outcome, OPEN

    def _translate(self, exc: BaseException, connection: smtplib.SMTP) -> MailError:
        """Our error for what smtplib or the socket raised; drops a connection left unusable."""
        # After a refusal the connection is reset and stays usable; but on a 421 (the server
        # is closing the channel) the socket is closed, so reconnect next time.
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            self._forget_if_closed(connection)
            code, raw = next(iter(exc.recipients.values()))
            return classify_reply(code, _reply_text(raw))
        if isinstance(exc, smtplib.SMTPSenderRefused):
            self._forget_if_closed(connection)
            # A refused sender is about us, not the reader: never suppress the reader for it.
            return TransientMailError(
                f"sender refused: {exc.smtp_code} {_reply_text(exc.smtp_error)}", exc.smtp_code
            )
        if isinstance(exc, smtplib.SMTPDataError):
            self._forget_if_closed(connection)
            return classify_reply(exc.smtp_code, _reply_text(exc.smtp_error))
        self._drop()
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return TransientMailError(f"connection lost: {exc}")
        if isinstance(exc, smtplib.SMTPResponseException):
            return TransientMailError(
                f"{exc.smtp_code} {_reply_text(exc.smtp_error)}", exc.smtp_code
            )
        if isinstance(exc, TimeoutError):
            return TransientMailError(f"no answer within {self.timeout:g}s")
        return TransientMailError(f"connection error: {exc}")
