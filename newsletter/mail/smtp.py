"""The SMTP backend: TLS with certificate checks, AUTH only over TLS, one reused connection."""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
from collections.abc import Mapping
from typing import Any

from ..errors import (
    ConfigError,
    MailError,
    MessageNotSendable,
    RecipientRejected,
    TransientMailError,
)
from .backends import MailBackend
from .message import OutgoingMessage


def classify_reply(code: int, text: str) -> MailError:
    """Map an SMTP reply to our error: 4xx transient, 5xx a rejection of the recipient."""
    if 400 <= code < 500:
        return TransientMailError(f"{code} {text}", code)
    if 500 <= code < 600:
        return RecipientRejected(f"{code} {text}", code)
    return TransientMailError(f"unexpected reply {code} {text}", code)


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _pipelined(connection: smtplib.SMTP, message: OutgoingMessage, options: list[str]) -> None:
    """One transaction in two round trips (RFC 2920) instead of smtplib's four.

    MAIL, RCPT and DATA go out in one write; failures raise the exceptions smtplib's own
    ``sendmail`` raises, so callers handle both paths alike.
    """
    extra = "".join(f" {option}" for option in options)
    commands = f"MAIL FROM:<{message.sender}>{extra}\r\nRCPT TO:<{message.recipient}>\r\nDATA\r\n"
    connection.send(commands.encode("utf-8" if options else "ascii"))
    mail, rcpt, data = connection.getreply(), connection.getreply(), connection.getreply()
    if mail[0] != 250 or rcpt[0] not in (250, 251) or data[0] != 354:
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
    body = message.data
    if body.startswith(b".") or b"\n." in body:  # a plain search is far cheaper than the regex
        body = _LEADING_DOT.sub(b"..", body)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    connection.send(body + b".\r\n")
    final = connection.getreply()
    if final[0] != 250:
        _reset(connection, final)
        raise smtplib.SMTPDataError(final[0], final[1])


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
        self.open()
        connection = self._connection
        assert connection is not None
        options: list[str] = []
        if message.smtputf8:
            if not connection.has_extn("smtputf8"):
                raise MessageNotSendable(
                    "the address needs SMTPUTF8 and the server does not offer it"
                )
            options.append("SMTPUTF8")
        try:
            if connection.has_extn("pipelining"):
                _pipelined(connection, message, options)
                refused = {}
            else:
                refused = connection.sendmail(
                    message.sender, [message.recipient], message.data, mail_options=options
                )
        # sendmail itself sends RSET after a refusal, so the connection stays usable; but on
        # a 421 (the server is closing the channel) it closes the socket, so reconnect next time.
        except smtplib.SMTPRecipientsRefused as exc:
            self._forget_if_closed(connection)
            code, raw = next(iter(exc.recipients.values()))
            raise classify_reply(code, _reply_text(raw)) from exc
        except smtplib.SMTPSenderRefused as exc:
            self._forget_if_closed(connection)
            # A refused sender is about us, not the reader: never suppress the reader for it.
            raise TransientMailError(
                f"sender refused: {exc.smtp_code} {_reply_text(exc.smtp_error)}", exc.smtp_code
            ) from exc
        except smtplib.SMTPDataError as exc:
            self._forget_if_closed(connection)
            raise classify_reply(exc.smtp_code, _reply_text(exc.smtp_error)) from exc
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            raise TransientMailError(f"connection lost: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            self._drop()
            raise TransientMailError(
                f"{exc.smtp_code} {_reply_text(exc.smtp_error)}", exc.smtp_code
            ) from exc
        except TimeoutError as exc:
            self._drop()
            raise TransientMailError(f"no answer within {self.timeout:g}s") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TransientMailError(f"connection error: {exc}") from exc
        if refused:
            code, raw = next(iter(refused.values()))
            raise classify_reply(code, _reply_text(raw))
