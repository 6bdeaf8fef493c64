"""Mail backends: where finished messages go, chosen by NEWSLETTER_MAIL_BACKEND."""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from email import message_from_bytes, policy
from importlib.metadata import entry_points
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from flask import current_app

from newsletter.clock import utcnow
from newsletter.errors import ConfigError, MailError
from newsletter.mail.message import OutgoingMessage

ENTRY_POINT_GROUP = "newsletter.mail_backends"

Key = TypeVar("Key")


class MailBackend:
    """Delivers messages; one instance may hold a connection open for many of them."""

    # True where each instance is a connection of its own, so several sending at once go
    # faster: a digest batch then sends over SMTP_CONNECTIONS of them (mail/fanout.py).
    parallel: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config

    def open(self) -> None:
        """Prepare to send (connect); called lazily by ``send`` where that matters."""

    def close(self) -> None:
        """Release whatever ``open`` acquired; safe to call twice."""

    def send(self, message: OutgoingMessage) -> None:
        """Deliver one message or raise a MailError subclass saying how it failed."""
        raise NotImplementedError

    def send_many(
        self,
        items: Iterable[tuple[Key, OutgoingMessage]],
        offered: Callable[[Key], object] | None = None,
    ) -> Iterator[tuple[Key, MailError | None]]:
        """Deliver messages in order, yielding each key with its outcome (None: accepted).

        ``offered(key)`` is called before any part of that message may reach the server, so a
        caller's journal can tell the messages that might have been delivered from the ones
        that cannot have been.

        Every message taken from ``items`` gets exactly one outcome, in order, though a
        backend may take messages ahead of the outcomes it has yielded (the SMTP backend takes
        up to two, to overlap them on the wire). To stop early, end ``items``: messages taken
        ahead are still sent, except after a connection lost without a reply, when they come
        back as ``NotHandedOver``; the messages not taken are untouched. Closing the iterator
        instead (or raising in the loop over it) abandons what was taken ahead unsent and
        without an outcome.
        """
        for key, message in items:
            if offered is not None:
                offered(key)
            try:
                self.send(message)
            except MailError as exc:
                yield key, exc
            else:
                yield key, None

    def __enter__(self) -> MailBackend:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MemoryBackend(MailBackend):
    """Keeps messages in a process-wide list, for tests."""

    outbox: ClassVar[list[OutgoingMessage]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def send(self, message: OutgoingMessage) -> None:
        with self._lock:
            self.outbox.append(message)


class ConsoleBackend(MailBackend):
    """Prints each message to standard output, decoded for a person to read."""

    def send(self, message: OutgoingMessage) -> None:
        parsed = message_from_bytes(message.data, policy=policy.default)
        out = [f"--- mail from {message.sender} to {message.recipient}"]
        out += [f"{name}: {value}" for name, value in parsed.items()]
        body = parsed.get_body(("plain",))
        out += ["", body.get_content() if body is not None else "", "---"]
        sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()


class FileBackend(MailBackend):
    """Writes one .eml file per message into the outbox folder."""

    _counter: ClassVar[int] = 0

    def open(self) -> None:
        Path(self.config["MAIL_OUTBOX"]).mkdir(parents=True, exist_ok=True)

    def send(self, message: OutgoingMessage) -> None:
        folder = Path(self.config["MAIL_OUTBOX"])
        folder.mkdir(parents=True, exist_ok=True)
        FileBackend._counter += 1
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
        safe_id = re.sub(r"[^A-Za-z0-9.-]+", "_", message.message_id.strip("<>"))[:60]
        final = folder / f"{stamp}-{os.getpid()}-{FileBackend._counter}-{safe_id}.eml"
        partial = final.with_suffix(".part")
        # Written aside then renamed, so a reader of the outbox never sees half a message.
        partial.write_bytes(message.data)
        partial.replace(final)


BUILTIN: dict[str, str] = {
    "memory": "newsletter.mail.backends:MemoryBackend",
    "console": "newsletter.mail.backends:ConsoleBackend",
    "file": "newsletter.mail.backends:FileBackend",
    "smtp": "newsletter.mail.smtp:SMTPBackend",
}


def backend_class(name: str) -> type[MailBackend]:
    """Resolve a backend name: a built-in, or one registered under the entry-point group."""
    target = BUILTIN.get(name)
    if target is None:
        found = entry_points(group=ENTRY_POINT_GROUP, name=name)
        if not found:
            raise ConfigError(
                "NEWSLETTER_MAIL_BACKEND",
                f"unknown backend {name!r}; use smtp, console, file, memory or a name "
                f"registered in the {ENTRY_POINT_GROUP!r} entry-point group",
            )
        loaded: type[MailBackend] = next(iter(found)).load()
        return loaded
    module_name, _, attr = target.partition(":")
    module = __import__(module_name, fromlist=[attr])
    resolved: type[MailBackend] = getattr(module, attr)
    return resolved


def get_backend() -> MailBackend:
    """A new, unopened backend for the current app's settings."""
    config = current_app.config
    return backend_class(str(config["MAIL_BACKEND"]))(config)
