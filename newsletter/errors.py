"""The one exception tree of the newsletter domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


class NewsletterError(Exception):
    """Base of every error the newsletter raises on purpose."""


class ConfigError(NewsletterError):
    """A setting is missing, malformed or unsafe."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


class InvalidAddress(NewsletterError):
    """An email address failed validation."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(reason)
        self.address = address
        self.reason = reason


class TokenError(NewsletterError):
    """A signed token could not be used."""


class TokenInvalid(TokenError):
    """The token is forged, truncated, tampered with or for another purpose."""


class TokenExpired(TokenError):
    """The token was genuine but is older than its purpose allows."""

    def __init__(self, message: str, payload: object) -> None:
        super().__init__(message)
        self.payload = payload


class MailError(NewsletterError):
    """A message could not be handed to the mail system."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientMailError(MailError):
    """A 4xx reply, a dropped connection or a timeout: worth retrying later."""


class NotHandedOver(TransientMailError):
    """The message's content never reached the server (its connection failed first)."""


class OutcomeUnknown(MailError):
    """The whole message reached the server, then its reply never came (RFC 1047).

    The server may have kept it: sending it again could be a second copy, so it is recorded
    as unknown and left for an operator to re-offer after review.
    """


class RecipientRejected(MailError):
    """A 5xx reply about this recipient: the address must be suppressed."""


class MessageNotSendable(MailError):
    """The message cannot go through this server (e.g. no SMTPUTF8); fail it, suppress nothing."""


class FeedError(NewsletterError):
    """A whole feed could not be read: unreachable, timed out, or not RSS/Atom."""

    def __init__(self, feed: str, reason: str) -> None:
        super().__init__(f"{feed}: {reason}")
        self.feed = feed
        self.reason = reason


class FeedDeferred(FeedError):
    """The feed's server asked us to come back later (429 or 503 with Retry-After)."""

    def __init__(self, feed: str, reason: str, until: datetime) -> None:
        super().__init__(feed, reason)
        self.until = until


class InvalidArticle(NewsletterError):
    """One article's fields cannot be stored; ``field`` names the culprit."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidReaderField(NewsletterError):
    """A reader's name, topics or frequency from an operator cannot be stored."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ReaderRefused(NewsletterError):
    """An operator asked to add an address that is suppressed or already on the list."""


class ImportFileError(NewsletterError):
    """A whole import file cannot be read: not UTF-8, not CSV, or without an email column."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class ConfigErrors(ConfigError):
    """Several settings are wrong at once; ``errors`` holds each one, in order."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        super().__init__(errors[0].setting, errors[0].message)
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


class NotResumable(NewsletterError):
    """The edition asked to be resumed does not exist or is done: there is nothing to send."""

    def __init__(self, edition_id: int, message: str) -> None:
        super().__init__(message)
        self.edition_id = edition_id


class OperatorError(NewsletterError):
    """An operator account or API token cannot be created or changed as asked."""


class NotAllowed(NewsletterError):
    """The caller (an operator's role, an API token's scope) may not do this."""


class InvalidCursor(NewsletterError):
    """A page cursor (where a listing continues) that this service did not issue."""
