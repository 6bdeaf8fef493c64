"""What became of recent editions: sent, failed, unknown, bounced, complained, unsubscribed.

Each figure is one grouped statement over all the editions asked about (the ledger's
index on edition and state, the bounce log joined to it), and the unsubscribes one
indexed look-up per edition, so a page of editions costs a few statements however many
readers they reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from newsletter.bounces.process import bounce_counts_of
from newsletter.db.models import BounceKind, DeliveryState, Edition, EditionKind
from newsletter.digests import ledger
from newsletter.extensions import db


@dataclass(frozen=True, slots=True)
class Outcomes:
    """One edition's figures."""

    edition: Edition
    by_state: dict[str, int]
    bounces: dict[str, int]  # bounce reports by kind
    unsubscribed: int
    # The unsubscribes counted are those before this moment (the next edition of the same
    # kind and frequency); None for the newest, whose window is still open.
    until: datetime | None

    @property
    def readers(self) -> int:
        return sum(self.by_state.values())

    total = readers

    @property
    def states(self) -> dict[str, int]:
        """Every state of the ledger, zeros included."""
        return {state.value: self.by_state.get(state, 0) for state in DeliveryState}

    @property
    def finished(self) -> int:
        """Rows no worker will touch again."""
        return sum(self.by_state.get(state, 0) for state in ledger.FINISHED)

    @property
    def sent(self) -> int:
        return self.by_state.get(DeliveryState.SENT, 0)

    @property
    def failed(self) -> int:
        return self.by_state.get(DeliveryState.FAILED, 0)

    @property
    def unknown(self) -> int:
        return self.by_state.get(DeliveryState.UNKNOWN, 0)

    @property
    def skipped(self) -> int:
        return self.by_state.get(DeliveryState.SKIPPED, 0)

    @property
    def waiting(self) -> int:
        """Rows not yet sent or given up: queued, or held by a batch."""
        return sum(self.by_state.get(state, 0) for state in ledger.UNFINISHED)

    @property
    def bounced(self) -> int:
        """Bounce reports of every kind but complaints (hard, soft, policy)."""
        return sum(n for kind, n in self.bounces.items() if kind != BounceKind.COMPLAINT)

    @property
    def complained(self) -> int:
        return self.bounces.get(BounceKind.COMPLAINT, 0)

    def shown(self) -> dict[str, int]:
        """The figures an edition's page shows, by name."""
        return {
            "total": self.total,
            "finished": self.finished,
            "waiting": self.waiting,
            "sent": self.sent,
            "failed": self.failed,
            "skipped": self.skipped,
            "unknown": self.unknown,
            "bounced": self.bounced,
            "complained": self.complained,
            "unsubscribed": self.unsubscribed,
        }


def _next_of_series(edition: Edition) -> datetime | None:
    """When the next edition of the same series was created: digests of one frequency
    follow each other, and alerts are a series of their own."""
    query = select(func.min(Edition.created_at)).where(
        Edition.id > edition.id, Edition.kind == edition.kind
    )
    if edition.kind != EditionKind.ALERT:
        query = query.where(Edition.frequency == edition.frequency)
    following: datetime | None = db.session.scalar(query)
    return following


def of_editions(editions: Sequence[Edition]) -> list[Outcomes]:
    """The figures of these editions, in the order given.

    "Unsubscribed" counts the readers an edition was sent to whose unsubscribe came after
    it was created and before the next edition of its series: the unsubscribe link does not
    say which mail it came from, so this is the nearest the ledger can tell.
    """
    ids = [edition.id for edition in editions]
    by_state = ledger.counts_of(ids)
    oldest = min((edition.created_at for edition in editions), default=None)
    bounces = bounce_counts_of(ids, oldest)
    found = []
    for edition in editions:
        until = _next_of_series(edition)
        unsubscribed = ledger.unsubscribed_between(edition.id, edition.created_at, until)
        found.append(
            Outcomes(edition, by_state[edition.id], bounces[edition.id], unsubscribed, until)
        )
    return found


def of(edition_id: int) -> Outcomes:
    """One edition's figures (its page, and the progress it polls while sending)."""
    edition = db.session.get(Edition, edition_id)
    if edition is None:
        raise LookupError(f"no edition {edition_id}")
    return of_editions([edition])[0]
