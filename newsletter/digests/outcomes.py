"""What became of an edition's messages: the ledger's states and the reports that came back."""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.bounces.process import bounce_counts
from newsletter.db.models import BounceKind, DeliveryState
from newsletter.digests import ledger


@dataclass(frozen=True, slots=True)
class Outcomes:
    """An edition's ledger by state (every state, zeros included) and its bounce events by
    kind, with the totals an operator reads."""

    states: dict[str, int]
    bounces: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def finished(self) -> int:
        """Rows no worker will touch again."""
        return sum(self.states[state] for state in ledger.FINISHED)

    @property
    def waiting(self) -> int:
        return sum(self.states[state] for state in ledger.UNFINISHED)

    @property
    def bounced(self) -> int:
        """Messages reported back as not delivered (hard, soft or for a policy)."""
        return sum(n for kind, n in self.bounces.items() if kind != BounceKind.COMPLAINT)

    @property
    def complained(self) -> int:
        return self.bounces[BounceKind.COMPLAINT]

    def shown(self) -> dict[str, int]:
        """The figures an edition's page shows, by name."""
        return {
            "total": self.total,
            "finished": self.finished,
            "waiting": self.waiting,
            "sent": self.states[DeliveryState.SENT],
            "failed": self.states[DeliveryState.FAILED],
            "skipped": self.states[DeliveryState.SKIPPED],
            "unknown": self.states[DeliveryState.UNKNOWN],
            "bounced": self.bounced,
            "complained": self.complained,
        }


def of(edition_id: int) -> Outcomes:
    found = ledger.counts(edition_id)
    bounced = bounce_counts(edition_id)
    return Outcomes(
        states={state.value: found.get(state, 0) for state in DeliveryState},
        bounces={kind.value: bounced.get(kind, 0) for kind in BounceKind},
    )
