"""The reader list's one door: every new reader (signup, operator, import) is created here.

Creation is one rule for all of them: a pending reader gets a confirm link's nonce and no
confirmation time, an active one is confirmed now and has no link; an address already on
the list is left as it is. Also the checks of what operators type.

Readers go in as whole chunks, in the shape each database takes fastest. PostgreSQL gets one
statement per chunk and table, its rows passed as one JSON array that the server unpacks: a
handful of parameters however many rows, so neither SQLAlchemy nor psycopg renders or parses
thousands of placeholders (json.dumps is fast C code, whereas arrays of strings are escaped
value by value in Python by psycopg). SQLite gets executemany, which sqlite3 runs natively.
"""

from __future__ import annotations

import getpass
import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import insert, select, text

from newsletter.clock import utcnow
from newsletter.db.dialect import on_postgresql, upsert
from newsletter.db.models import Status, Subscriber, SubscriberTopic, new_uid
from newsletter.errors import InvalidReaderField, ReaderRefused
from newsletter.extensions import db
from newsletter.readers import consent, notices, suppression
from newsletter.readers.consent import Origin
from newsletter.readers.notices import Notice

NAME_LENGTH = 100  # the column's size
CONTROL_CHARACTERS = "contains control characters (line breaks, tabs, ...)"


class NewReader(NamedTuple):
    """A reader to create: a normalized address and checked choices."""

    email: str
    name: str
    topics: Sequence[str]
    frequency: str
    language: str | None = None  # None: the site's


_PG_READERS = text(
    """INSERT INTO subscriber (uid, email, name, status, frequency, confirm_nonce, language,
        created_at, confirmed_at)
    SELECT r->>0, r->>1, r->>2, :status, r->>3, r->>4, r->>5, :now,
        CAST(:confirmed_at AS timestamptz)
    FROM json_array_elements(CAST(:rows AS json)) AS r
    ON CONFLICT (email) DO NOTHING
    RETURNING id, email
    """
)
_PG_TOPICS = text(
    """INSERT INTO subscriber_topic (subscriber_id, topic)
    SELECT CAST(r->>0 AS integer), r->>1 FROM json_array_elements(CAST(:rows AS json)) AS r
    """
)


def create(readers: Sequence[NewReader], status: Status, now: datetime) -> dict[str, int]:
    """Create the readers whose address is still free, with their topics; ids by address.

    In the caller's transaction. An address already on the list (or added by a signup since
    the caller checked it) is left out of the answer, not an error.
    """
    if not readers:
        return {}
    if status not in (Status.PENDING, Status.ACTIVE):
        raise ValueError(f"readers are created pending or active, not {status}")
    pending = status is Status.PENDING
    rows = [
        (
            new_uid(),
            r.email,
            r.name,
            r.frequency,
            secrets.token_urlsafe(12) if pending else None,
            r.language,
        )
        for r in readers
    ]
    confirmed_at = None if pending else now
    if on_postgresql():
        found = db.session.execute(
            _PG_READERS,
            {
                "status": status,
                "now": now,
                "confirmed_at": confirmed_at,
                "rows": json.dumps(rows, ensure_ascii=False),
            },
        )
        ids = {email: id_ for id_, email in found}
    else:
        table = Subscriber.__table__
        statement = (
            upsert(table)
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(table.c.id, table.c.email)
        )
        params = [
            {
                "uid": uid,
                "email": email,
                "name": name,
                "frequency": frequency,
                "confirm_nonce": nonce,
                "language": language,
                "status": status,
                "created_at": now,
                "confirmed_at": confirmed_at,
                "unsubscribed_at": None,
            }
            for uid, email, name, frequency, nonce, language in rows
        ]
        ids = {email: id_ for id_, email in db.session.execute(statement, params)}
    _add_topics([(ids[r.email], slug) for r in readers if r.email in ids for slug in r.topics])
    return ids


def _add_topics(pairs: Sequence[tuple[int, str]]) -> None:
    """Add (subscriber id, topic slug) rows."""
    if not pairs:
        return
    if on_postgresql():
        db.session.execute(_PG_TOPICS, {"rows": json.dumps(pairs, ensure_ascii=False)})
        return
    db.session.execute(
        insert(SubscriberTopic.__table__),
        [{"subscriber_id": id_, "topic": topic} for id_, topic in pairs],
    )


def operator() -> str:
    """Who runs the command, for the consent log (the login name, when the system knows it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return "unknown"


def cli_origin(source: str = "cli") -> Origin:
    """The origin of a change made from the command line."""
    return Origin(source=source[:120])


def clean_name(value: str) -> str:
    """A display name as stored; control characters would end up in mail headers and terminals."""
    name = value.strip()
    if any(not ch.isprintable() for ch in name):
        raise InvalidReaderField("name", CONTROL_CHARACTERS)
    if len(name) > NAME_LENGTH:
        raise InvalidReaderField("name", f"longer than {NAME_LENGTH} characters")
    return name


def add_reader(
    email: str, name: str, chosen: list[str], frequency: str, *, confirmed: bool, origin: Origin
) -> int:
    """Add one new reader for an operator, in the caller's transaction; returns its id.

    Pending readers are sent a confirmation mail once the caller commits.
    """
    reason = suppression.reason(email)
    if reason is not None:
        raise ReaderRefused(
            f"{email} is suppressed ({reason}); only the reader's own signup and confirmation "
            "through the form can bring it back"
        )
    existing = db.session.scalar(select(Subscriber.status).where(Subscriber.email == email))
    if existing is not None:
        raise ReaderRefused(f"{email} is already on the list ({existing}); nothing changed")
    status = Status.ACTIVE if confirmed else Status.PENDING
    subscriber_id = create([NewReader(email, name, chosen, frequency)], status, utcnow()).get(email)
    if subscriber_id is None:  # added by a signup between the look-up and the insert
        raise ReaderRefused(f"{email} is already on the list; nothing changed")
    consent.record(
        subscriber_id,
        consent.Action.ADD,
        origin,
        {"status": status, "topics": chosen, "frequency": frequency, "operator": operator()},
    )
    if not confirmed:
        notices.enqueue(subscriber_id, Notice.CONFIRM)
    return subscriber_id
