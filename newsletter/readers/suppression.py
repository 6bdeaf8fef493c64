"""The suppression list: addresses that must not be mailed, kept only as hashes.

This module is the only writer of the list. An address is suppressed when its mail
bounces for good, when its reader complains, and when its reader's data is erased; it is
lifted only by that reader's own confirmed opt-in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from newsletter.db.dialect import upsert
from newsletter.db.models import CONSENTING, Status, Subscriber, Suppression
from newsletter.extensions import db
from newsletter.readers import consent
from newsletter.readers.addresses import address_hash

# Reasons, as stored; a reader suppressed for the first two takes it as their status.
BOUNCED = Status.BOUNCED
COMPLAINED = Status.COMPLAINED
ERASED = "erased"


def reason(email: str) -> str | None:
    """Why a normalized address must not be mailed, or None."""
    return db.session.scalar(
        select(Suppression.reason).where(Suppression.address_hash == address_hash(email))
    )


def lookup(email: str) -> tuple[str, datetime] | None:
    """Why and since when a normalized address must not be mailed, or None."""
    row = db.session.execute(
        select(Suppression.reason, Suppression.created_at).where(
            Suppression.address_hash == address_hash(email)
        )
    ).first()
    return (row.reason, row.created_at) if row is not None else None


def _add(hashes: Sequence[str], why: str, *, overwrite: bool = False) -> set[str]:
    """Insert the hashes not listed yet; returns those it added."""
    if not hashes:
        return set()
    statement: Any = upsert(Suppression.__table__)
    if overwrite:
        statement = statement.on_conflict_do_update(
            index_elements=["address_hash"], set_={"reason": why}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["address_hash"])
    added = db.session.scalars(
        statement.returning(Suppression.__table__.c.address_hash),
        [{"address_hash": key, "reason": why} for key in hashes],
    )
    return set(added)


def suppress_readers(subscriber_ids: Sequence[int], why: str, source: str, detail: str = "") -> int:
    """Suppress these readers' addresses for ``why`` (bounced or complained), in the caller's
    transaction; returns how many readers this changed.

    A reader still pending or active takes the reason as status and loses any outstanding
    confirm link; a complaint is also a withdrawal of consent, kept in the consent log.
    """
    if why not in (BOUNCED, COMPLAINED):
        raise ValueError(f"readers are suppressed as bounced or complained, not {why}")
    if not subscriber_ids:
        return 0
    readers = db.session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.status)
        .where(Subscriber.id.in_(subscriber_ids))
        .order_by(Subscriber.id)
        .with_for_update()
    ).all()
    added = _add(sorted({address_hash(email) for _, email, _ in readers}), why)
    current = [row for row in readers if row.status in CONSENTING]
    if current:
        db.session.execute(
            update(Subscriber)
            .where(Subscriber.id.in_([row.id for row in current]))
            .values(status=why, confirm_nonce=None),
            execution_options={"synchronize_session": False},
        )
        db.session.expire_all()
    if why == COMPLAINED:
        origin = consent.Origin(source=f"bounces:{source}"[:120])
        for row in current:
            consent.record(
                row.id,
                consent.Action.COMPLAINT,
                origin,
                {"previous_status": row.status, "report": detail[:200]},
            )
    changed = {row.id for row in current}
    changed.update(row.id for row in readers if address_hash(row.email) in added)
    return len(changed)


def erased(email: str) -> None:
    """Suppress an erased person's address for good, whatever it was suppressed for before."""
    _add([address_hash(email)], ERASED, overwrite=True)


def lift(email: str) -> None:
    """Mail this address again: only for its reader's own fresh, confirmed opt-in."""
    db.session.execute(delete(Suppression).where(Suppression.address_hash == address_hash(email)))
